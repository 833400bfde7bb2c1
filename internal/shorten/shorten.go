// Package shorten cuts text down for messages and pages: a first line, a
// prefix of at most n bytes that never ends inside a UTF-8 sequence.
package shorten

import (
	"strings"
	"unicode/utf8"
)

// FirstLine is s up to its first newline.
func FirstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// Cut returns at most n bytes of s, cut at a rune boundary, and how many
// bytes were cut off.
func Cut(s string, n int) (string, int) {
	if len(s) <= n {
		return s, 0
	}
	i := max(n, 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i], len(s) - i
}

// Clip is s when it has at most n bytes, else its first n bytes (at a rune
// boundary) and "...".
func Clip(s string, n int) string {
	if head, cut := Cut(s, n); cut > 0 {
		return head + "..."
	}
	return s
}
