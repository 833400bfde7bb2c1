package steps

// Internals the external tests (package steps_test) exercise.
var (
	ExpandKeys = expandKeys
	BoardGlob  = boardGlob
)

// DestName is where collect writes a source file, inside to.
func DestName(to, src string) (string, error) { return (&collectAction{To: to}).destName(src) }
