package steps

import (
	"context"
	"regexp"
	"strings"
	"time"
)

// expandKeys turns key macros such as <ENTER> or <CTRL-C> into bytes.
func expandKeys(s string) string {
	if !strings.Contains(s, "<") {
		return s
	}
	return keyRE.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.ToUpper(m[1 : len(m)-1])
		if v, ok := keys[name]; ok {
			return v
		}
		if strings.HasPrefix(name, "CTRL-") && len(name) == 6 {
			c := name[5]
			if c >= 'A' && c <= 'Z' || c >= '[' && c <= '_' {
				return string([]byte{c & 0x1f})
			}
		}
		return m
	})
}

var keyRE = regexp.MustCompile(`<(?:(?i:ctrl-)[\[\\\]^_]|[A-Za-z0-9-]+)>`)

var keys = map[string]string{
	"ENTER": "\r", "LF": "\n", "CR": "\r", "TAB": "\t", "ESC": "\x1b", "SPACE": " ",
	"BACKSPACE": "\x7f", "DEL": "\x1b[3~", "UP": "\x1b[A", "DOWN": "\x1b[B", "RIGHT": "\x1b[C", "LEFT": "\x1b[D",
	"HOME": "\x1b[H", "END": "\x1b[F",
	"F1": "\x1bOP", "F2": "\x1bOQ", "F3": "\x1bOR", "F4": "\x1bOS", "F5": "\x1b[15~", "F6": "\x1b[17~",
	"F7": "\x1b[18~", "F8": "\x1b[19~", "F9": "\x1b[20~", "F10": "\x1b[21~", "F11": "\x1b[23~", "F12": "\x1b[24~",
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
