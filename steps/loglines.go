package steps

import (
	"strings"

	"github.com/jsplan/jsplan/engine"
	"github.com/jsplan/jsplan/engine/redact"
)

// lineLog writes a command's output lines to the run log. The lines go
// through one masking stream before they are logged one by one, so a
// multi-line secret is masked whole and no line of it shows (a line that
// may begin a secret waits for the next one).
type lineLog struct {
	r      *engine.StepRun
	prefix string
	stream *redact.Stream
	part   string
}

func newLineLog(r *engine.StepRun, prefix string) *lineLog {
	return &lineLog{r: r, prefix: prefix, stream: r.Redactor().Stream()}
}

// Line logs one line of output (without its newline).
func (l *lineLog) Line(s string) { l.emit(l.stream.Write(s + "\n")) }

// Close logs what was held back.
func (l *lineLog) Close() {
	l.emit(l.stream.Flush())
	if l.part != "" {
		l.r.Logf("%s%s", l.prefix, l.part)
		l.part = ""
	}
}

func (l *lineLog) emit(masked string) {
	text := l.part + masked
	for {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			break
		}
		l.r.Logf("%s%s", l.prefix, text[:i])
		text = text[i+1:]
	}
	l.part = text
}
