//go:build linux

package procguard

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jsplan/jsplan/internal/procfs"
)

// TagEnv is the environment variable that marks the processes jsplan
// starts and everything they start in turn: a child inherits its parent's
// environment, so a process that left its process group (set -m, setpgid)
// or its session (setsid, a daemon) still carries the mark. Its value is a
// list of tags separated by ':' (nested jsplan runs add theirs).
const TagEnv = "JSPLAN_GUARD"

var (
	tokenOnce sync.Once
	token     string // this process's prefix of tags
	tagSeq    atomic.Int64
)

func myToken() string {
	tokenOnce.Do(func() {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		token = hex.EncodeToString(b)
	})
	return token
}

// Tag marks cmd, to be started, and returns its tag: KillTagged(tag) ends
// cmd and every process it started, wherever they moved; the guardian ends
// every process tagged by this jsplan when jsplan ends.
func Tag(cmd *exec.Cmd) string {
	tag := myToken() + "/" + strconv.FormatInt(tagSeq.Add(1), 10)
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env)+1)
	prev := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, TagEnv+"="); ok {
			prev = v
			continue
		}
		out = append(out, kv)
	}
	if prev != "" {
		tag = prev + ":" + tag
	}
	cmd.Env = append(out, TagEnv+"="+tag)
	if i := strings.LastIndexByte(tag, ':'); i >= 0 {
		tag = tag[i+1:]
	}
	return tag
}

// tagged reports whether process pid carries a tag that is match or,
// with prefix, starts with match.
func tagged(pid int, match string, prefix bool) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		v, ok := bytes.CutPrefix(kv, []byte(TagEnv+"="))
		if !ok {
			continue
		}
		for _, t := range strings.Split(string(v), ":") {
			if t == match || prefix && strings.HasPrefix(t, match) {
				return true
			}
		}
	}
	return false
}

// KillTagged kills every process carrying tag (from Tag), scanning again
// until none is left (bounded at 5 s).
func KillTagged(tag string) { killTagged(tag, false) }

func killTagged(match string, prefix bool) {
	if match == "" {
		return
	}
	self := os.Getpid()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left := 0
		procfs.Each(func(p procfs.Stat) {
			if p.PID == self || p.State == 'Z' || p.State == 'X' || !tagged(p.PID, match, prefix) {
				return
			}
			left++
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		})
		if left == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}
