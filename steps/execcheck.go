package steps

import "strings"

// replacesShell returns the command that script runs with exec in place of
// the board's login shell (`exec sh`, `exec -a x prog`), or "" when it does
// not. Such a command leaves no end marker: the shell that would print it
// is gone, and jsplan could only wait out the step's timeout. exec with
// redirections only (`exec >log 2>&1`) keeps the shell and is fine, as is
// exec inside quotes (`sh -c 'exec prog'`) or a subshell's `(exec prog)`.
func replacesShell(script string) string {
	cmdPos, depth := true, 0
	for i := 0; i < len(script); {
		c := script[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(script[i+1:], '\'')
			if j < 0 {
				return ""
			}
			i += j + 2
			cmdPos = false
			continue
		case c == '"':
			j := i + 1
			for j < len(script) && script[j] != '"' {
				if script[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
			cmdPos = false
			continue
		case c == '\\':
			i += 2
			cmdPos = false
			continue
		case c == '#' && cmdPos:
			j := strings.IndexByte(script[i:], '\n')
			if j < 0 {
				return ""
			}
			i += j
			continue
		case c == '(':
			depth++
			cmdPos = true
			i++
			continue
		case c == ')':
			depth--
			cmdPos = false
			i++
			continue
		case c == ';' || c == '&' || c == '|' || c == '\n' || c == '{' || c == '}':
			cmdPos = true
			i++
			continue
		case c == ' ' || c == '\t':
			i++
			continue
		}
		j := i
		for j < len(script) && !strings.ContainsRune(" \t\n;&|(){}'\"\\", rune(script[j])) {
			j++
		}
		word := script[i:j]
		if cmdPos && word == "exec" && depth == 0 {
			if cmd := execTarget(script[j:]); cmd != "" {
				return cmd
			}
		}
		switch {
		case !cmdPos:
		case word == "then" || word == "do" || word == "else" || word == "!" || word == "time" ||
			strings.Contains(word, "=") && !strings.HasPrefix(word, "="):
		default:
			cmdPos = false
		}
		if j == i {
			j++
		}
		i = j
	}
	return ""
}

// execTarget returns the command word after `exec`, skipping
// redirections, or "" when there is none.
func execTarget(rest string) string {
	if i := strings.IndexAny(rest, ";&|\n)}"); i >= 0 {
		rest = rest[:i]
	}
	fields := strings.Fields(rest)
	for k := 0; k < len(fields); k++ {
		w := strings.TrimLeft(fields[k], "0123456789")
		if strings.HasPrefix(w, "<") || strings.HasPrefix(w, ">") {
			if strings.Trim(w, "<>&") == "" {
				k++ // the redirection's target is the next word
			}
			continue
		}
		return fields[k]
	}
	return ""
}
