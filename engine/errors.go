package engine

import (
	"strings"

	"github.com/hashicorp/go-multierror"
)

// appendErr collects errors that all matter (every finally step, every
// device that failed to close) into one error that still unwraps to each,
// so diag.ClassOf and errors.Is see them all.
func appendErr(all error, err error) error {
	if err == nil {
		return all
	}
	m := multierror.Append(all, err)
	m.ErrorFormat = oneLine
	return m
}

// oneLine formats several errors on one line, first error first: reports
// and summaries quote the first line of an error.
func oneLine(errs []error) string {
	if len(errs) == 1 {
		return errs[0].Error()
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "; and ")
}
