(function () {
  'use strict';
  function openTo(id) {
    var e = document.getElementById(id);
    if (!e) return;
    for (var p = e; p; p = p.parentElement) if (p.tagName === 'DETAILS') p.open = true;
    document.querySelectorAll('details.flash').forEach(function (d) { d.classList.remove('flash'); });
    if (e.tagName === 'DETAILS') e.classList.add('flash');
  }
  function fromHash() { if (location.hash.length > 1) openTo(decodeURIComponent(location.hash.slice(1))); }
  window.addEventListener('hashchange', fromHash);
  document.querySelectorAll('a[href^="#"]').forEach(function (a) {
    a.addEventListener('click', function () { openTo(decodeURIComponent(a.getAttribute('href').slice(1))); });
  });
  fromHash();

  var secs = document.querySelectorAll('details.sec');
  document.getElementById('expand').addEventListener('click', function () { secs.forEach(function (d) { d.open = true; }); });
  document.getElementById('collapse').addEventListener('click', function () { secs.forEach(function (d) { d.open = false; }); });

  var q = document.getElementById('q'), info = document.getElementById('hits'), hits = [], cur = -1, timer;
  function go(i) {
    if (!hits.length) return;
    if (cur >= 0) hits[cur].classList.remove('cur');
    cur = (i + hits.length) % hits.length;
    var l = hits[cur];
    for (var p = l; p; p = p.parentElement) if (p.tagName === 'DETAILS') p.open = true;
    l.classList.add('cur');
    l.scrollIntoView({ block: 'center' });
    info.textContent = (cur + 1) + ' of ' + hits.length + (hits.length === 1 ? ' line' : ' lines');
  }
  function search() {
    var s = q.value.toLowerCase();
    hits.forEach(function (l) { l.classList.remove('hit', 'cur'); });
    hits = []; cur = -1;
    if (s) {
      document.querySelectorAll('.l > span').forEach(function (sp) {
        if (sp.textContent.toLowerCase().indexOf(s) >= 0) { sp.parentElement.classList.add('hit'); hits.push(sp.parentElement); }
      });
    }
    info.textContent = s ? (hits.length ? '' : 'no line matches') : '';
    go(0);
  }
  q.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(search, 250); });
  q.addEventListener('keydown', function (e) {
    if (e.key !== 'Enter') return;
    e.preventDefault();
    clearTimeout(timer);
    if (cur < 0) search(); else go(cur + (e.shiftKey ? -1 : 1));
  });
  document.getElementById('next').addEventListener('click', function () { if (cur < 0) search(); else go(cur + 1); });
  document.getElementById('prev').addEventListener('click', function () { go(cur - 1); });
})();
