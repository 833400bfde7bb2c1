(function () {
  'use strict';
  document.querySelectorAll('#legend input').forEach(function (cb) {
    cb.addEventListener('change', function () {
      var g = document.getElementById('ser-' + cb.getAttribute('data-s'));
      if (g) g.style.display = cb.checked ? '' : 'none';
    });
  });
})();
