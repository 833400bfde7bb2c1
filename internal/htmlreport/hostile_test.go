package htmlreport

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostileReports are report.json files as a hostile run or person could
// leave them.
var hostileReports = map[string]string{
	"null step":        `{"plan":"p","status":"failed","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[null]}`,
	"null finally":     `{"plan":"p","status":"failed","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[{"index":"1","name":"a","status":"passed","start":"2026-11-29T10:00:01Z","duration_seconds":1}],"finally":[null]}`,
	"null test":        `{"plan":"p","status":"failed","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[{"index":"1","name":"a","status":"failed","start":"2026-11-29T10:00:01Z","duration_seconds":1,"tests":[null,{"name":"x","status":"fail","tests":[null]}]}]}`,
	"null child":       `{"plan":"p","status":"failed","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[{"index":"1","name":"a","status":"failed","steps":[null]}]}`,
	"huge duration":    `{"plan":"p","status":"passed","start":"2026-11-29T10:00:00Z","duration_seconds":1e13,"steps":[{"index":"1","name":"a","status":"passed","start":"2026-11-29T10:00:01Z","duration_seconds":1e300}]}`,
	"negative":         `{"plan":"p","status":"passed","start":"2026-11-29T10:00:00Z","duration_seconds":-1e300,"steps":[{"index":"1","name":"a","status":"passed","start":"0001-01-01T00:00:01Z","duration_seconds":-5}]}`,
	"script in status": `{"plan":"<script>alert(1)</script>","board":"<img src=x onerror=alert(2)>","status":"</title><script>alert(3)</script>","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[{"index":"1\"><script>alert(4)</script>","name":"<svg onload=alert(5)>","type":"<b>","status":"</title></circle><script>alert(6)</script>","start":"2026-11-29T10:00:01Z","duration_seconds":1,"error":"<script>alert(7)</script>","tests":[{"name":"<script>alert(8)</script>","status":"<i>fail","message":"</pre><script>alert(9)</script>"}]}]}`,
}

func writeReport(t testing.TB, dir, body string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, JSONFile), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// scriptRe finds a script element or an event handler that a report
// smuggled into a page.
var scriptRe = regexp.MustCompile(`(?i)<script>alert|<img |<svg onload|<b>|<i>fail`)

// A hostile report.json neither crashes the report nor the history, nor
// puts markup of its own into them; one bad directory leaves the others.
func TestHostileReports(t *testing.T) {
	root := t.TempDir()
	var dirs []string
	for name, body := range hostileReports {
		dir := filepath.Join(root, strings.ReplaceAll(name, " ", "-"))
		writeReport(t, dir, body)
		writeLog(t, dir, 0.5, "### step 1: a", 0.6, "<script>alert(10)</script>")
		dirs = append(dirs, dir)
		start := time.Now()
		if err := Rebuild(dir, "", Options{}); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		b, _ := os.ReadFile(filepath.Join(dir, ReportFile))
		if m := scriptRe.Find(b); m != nil {
			t.Errorf("%s: the page holds %q", name, m)
		}
		if time.Since(start) > 10*time.Second || len(b) > 1<<20 {
			t.Errorf("%s: %d bytes in %s", name, len(b), time.Since(start))
		}
	}
	bad := filepath.Join(root, "zz-not-json")
	writeReport(t, bad, `{"steps":`)
	out := filepath.Join(root, "history.html")
	n, err := WriteHistory(out, append(dirs, bad))
	if err != nil || n != len(dirs) {
		t.Fatalf("history: %d runs, %v", n, err)
	}
	b, _ := os.ReadFile(out)
	if m := scriptRe.Find(b); m != nil {
		t.Errorf("history: the page holds %q", m)
	}
	if !strings.Contains(string(b), "zz-not-json") {
		t.Errorf("history does not say which directory it left out")
	}
}

// Both pages allow only their own style sheet and script, by hash.
func TestPagesPolicy(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 0.5, "### step 1: boot")
	page := render(t, dir, sampleResult(), Options{})
	writeReport(t, dir, `{"plan":"p","status":"passed","start":"2026-11-29T10:00:00Z","duration_seconds":3}`)
	out := filepath.Join(dir, "history.html")
	if _, err := WriteHistory(out, []string{dir}); err != nil {
		t.Fatal(err)
	}
	hist, _ := os.ReadFile(out)
	for name, p := range map[string]string{"report": page, "history": string(hist)} {
		m := regexp.MustCompile(`content="(default-src[^"]*)"`).FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("%s: no policy", name)
		}
		policy := html.UnescapeString(m[1])
		if regexp.MustCompile(`(script-src|style-src) [^;]*unsafe-inline`).MatchString(policy) {
			t.Errorf("%s: policy %q allows inline script or style elements", name, policy)
		}
		for _, el := range []string{"script", "style"} {
			body := regexp.MustCompile(`(?s)<`+el+`>(.*?)</`+el+`>`).FindAllStringSubmatch(p, -1)
			if len(body) != 1 {
				t.Fatalf("%s: %d %s elements", name, len(body), el)
			}
			sum := sha256.Sum256([]byte(body[0][1]))
			if want := fmt.Sprintf("%s-src 'sha256-%s'", el, base64.StdEncoding.EncodeToString(sum[:])); !strings.Contains(policy, want) {
				t.Errorf("%s: policy %q lacks %s", name, policy, want)
			}
		}
	}
}

// report.json and console.log are read as the artifacts are written: a
// symlink planted there (to /etc/shadow, say) is refused, not published.
func TestReadsNoPlantedLinks(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	if err := os.WriteFile(secret, []byte("root:SECRET-HASH:19000::::::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeReport(t, dir, `{"plan":"p","status":"passed","start":"2026-11-29T10:00:00Z","duration_seconds":3,"steps":[{"index":"1","name":"a","status":"passed","start":"2026-11-29T10:00:01Z","duration_seconds":1}]}`)
	if err := os.Symlink(secret, filepath.Join(dir, ConsoleFile)); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(dir, "", Options{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, ReportFile))
	if strings.Contains(string(b), "SECRET-HASH") || !strings.Contains(string(b), "refusing to read a symlink") {
		t.Errorf("the page of a planted console.log symlink:\n%s", b)
	}
	// A hard link and a FIFO are refused too (a FIFO would hang the read).
	os.Remove(filepath.Join(dir, ConsoleFile))
	if err := os.Link(secret, filepath.Join(dir, ConsoleFile)); err == nil {
		if err := Rebuild(dir, "", Options{}); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, ReportFile)); strings.Contains(string(b), "SECRET-HASH") {
			t.Errorf("the page embeds a hard-linked file")
		}
		os.Remove(filepath.Join(dir, ConsoleFile))
	}
	if err := mkfifo(filepath.Join(dir, ConsoleFile)); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(dir, "", Options{}); err != nil {
		t.Fatal(err)
	}
	// A report.json symlink is refused.
	os.Rename(filepath.Join(dir, JSONFile), filepath.Join(outside, JSONFile))
	if err := os.Symlink(filepath.Join(outside, JSONFile), filepath.Join(dir, JSONFile)); err != nil {
		t.Fatal(err)
	}
	if err := Rebuild(dir, "", Options{}); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("a report.json symlink: %v", err)
	}
}

// FuzzReport feeds arbitrary report.json files to the report and the
// history: they never panic, and stay small and quick.
func FuzzReport(f *testing.F) {
	for _, b := range hostileReports {
		f.Add([]byte(b))
	}
	f.Add([]byte(`{"steps":[{"index":"1","steps":[{"index":"1.1","tests":[{"tests":[{}]}]}]}],"finally":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		writeReport(t, dir, string(b))
		writeLog(t, dir, 0.5, "### step 1: a", 0.6, "x")
		res, err := ReadResult(dir)
		if err != nil {
			return
		}
		var page strings.Builder
		if err := Render(&page, dir, res, Options{}); err != nil {
			t.Fatal(err)
		}
		if _, err := WriteHistory(filepath.Join(dir, "history.html"), []string{dir}); err != nil {
			t.Fatal(err)
		}
	})
}

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o644) }

// Issue 22, item 6: colour codes that split a secret in console.log
// (grep --color=always) do not rejoin it on the page: the text is masked
// as it is shown.
func TestSecretSplitByColoursMasked(t *testing.T) {
	grep, err := exec.LookPath("grep")
	if err != nil {
		t.Skip("no grep")
	}
	const secret = "StrongPass"
	cmd := exec.Command(grep, "--color=always", "ong")
	cmd.Stdin = strings.NewReader("password=" + secret + "\n")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "\x1b[") {
		t.Fatalf("grep --color: %q %v", out, err)
	}
	dir := t.TempDir()
	writeLog(t, dir, 0.5, "### step 1: boot", 0.6, strings.TrimRight(string(out), "\n"))
	page := render(t, dir, sampleResult(), Options{Redact: func(s string) string { return strings.ReplaceAll(s, secret, "***") }})
	if strings.Contains(page, secret) || !strings.Contains(page, "password=***") {
		t.Errorf("the page shows the secret rejoined")
	}
}
