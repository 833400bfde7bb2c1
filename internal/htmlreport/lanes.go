package htmlreport

import (
	"fmt"

	"github.com/jsplan/jsplan/engine"
)

// lane is one board's row on the timeline of a run on several boards: a
// bar for every step that ran on it (steps that hold others are left out:
// their children show).
type lane struct {
	Board, Role string
	Bars        []*row
}

// lanes groups the rows by the board their step ran on, one lane per
// board of res, in role order; nil for a run on one board.
func lanes(res *engine.Result, rows []*row, opt *Options) []*lane {
	if len(res.Boards) < 2 {
		return nil
	}
	by := map[string]*lane{}
	var out []*lane
	for _, rb := range res.Boards {
		l := &lane{Board: opt.redact(rb.Board), Role: opt.redact(rb.Role)}
		by[rb.Board] = l
		out = append(out, l)
	}
	for _, r := range rows {
		l := by[r.span.res.Board]
		if l == nil || r.Parent || !r.Ran {
			continue
		}
		l.Bars = append(l.Bars, r)
	}
	return out
}

func (l *lane) Title() string {
	if l.Role == "" {
		return l.Board
	}
	return fmt.Sprintf("%s (%s)", l.Board, l.Role)
}
