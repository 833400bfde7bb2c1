package cmd

import "io"

// escFilter passes a board's output to the operator's terminal without the
// escape sequences that act beyond the screen: OSC (window titles, OSC 52
// clipboard writes, colour queries), DCS, APC, PM and SOS strings, and the
// CSI sequences that make the terminal answer (device status and cursor
// position reports, device attributes, mode reports) or act on the window.
// The answer of a query would arrive as input typed to the board. Colours,
// cursor moves and screen clears pass: a board's menus use them.
type escFilter struct {
	w     io.Writer
	state int
	seq   []byte // the sequence being read
}

const (
	fGround = iota
	fEsc    // after ESC
	fCSI    // in ESC [ ... final
	fString // in ESC ] / P / _ / ^ / X ... ST or BEL: dropped
	fStrEsc // ESC inside a string: ST (ESC \) ends it
)

// maxSeq bounds a CSI sequence kept to be judged; a longer one is dropped.
const maxSeq = 64

func (f *escFilter) Write(p []byte) (int, error) {
	out := make([]byte, 0, len(p))
	for _, c := range p {
		switch f.state {
		case fGround:
			if c == 0x1b {
				f.state, f.seq = fEsc, append(f.seq[:0], c)
				continue
			}
			out = append(out, c)
		case fEsc:
			switch c {
			case '[':
				f.state, f.seq = fCSI, append(f.seq, c)
			case ']', 'P', '_', '^', 'X':
				f.state = fString
			case 0x1b:
				out = append(out, f.seq...)
				f.seq = append(f.seq[:0], c)
			default:
				out = append(out, f.seq...)
				out = append(out, c)
				f.state = fGround
			}
		case fCSI:
			if c == 0x1b { // a new sequence cuts this one off: dropped
				f.state, f.seq = fEsc, append(f.seq[:0], c)
				continue
			}
			f.seq = append(f.seq, c)
			if c >= 0x40 && c <= 0x7e { // the final byte
				if csiAllowed(f.seq) {
					out = append(out, f.seq...)
				}
				f.state = fGround
			} else if len(f.seq) > maxSeq || c < 0x20 {
				f.state = fGround // malformed or too long: dropped
				if c < 0x20 {
					out = append(out, c)
				}
			}
		case fString:
			switch c {
			case 0x07:
				f.state = fGround
			case 0x1b:
				f.state = fStrEsc
			}
		case fStrEsc:
			if c == '\\' {
				f.state = fGround
			} else if c != 0x1b {
				f.state = fString
			}
		}
	}
	if len(out) > 0 {
		if _, err := f.w.Write(out); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// csiAllowed judges a whole CSI sequence (ESC [ params intermediates final).
func csiAllowed(seq []byte) bool {
	final := seq[len(seq)-1]
	body := seq[2 : len(seq)-1]
	for _, c := range body {
		if c >= 0x20 && c <= 0x2f { // an intermediate: DECRQM ($p), DECSCUSR...
			if c == '$' || c == '"' || c == '*' {
				return false
			}
		}
	}
	switch final {
	case 'n', // device status report (5n, 6n: cursor position)
		'c', // device attributes
		'x', // DECREQTPARM
		't', // window manipulation and reports (title, size)
		'q': // DECLL / DECSCUSR with intermediates; also XTVERSION (>q)
		return false
	}
	return true
}
