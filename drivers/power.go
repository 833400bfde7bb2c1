package drivers

import (
	"context"
	"time"
)

// CyclePower switches p off and on again with the documented fallbacks: a
// board that is known to be off (PowerStater) is just switched on; a Cycler
// cycles natively; any other driver is switched off, left off for delay and
// switched on.
func CyclePower(ctx context.Context, p Power, delay time.Duration) error {
	if ps, ok := p.(PowerStater); ok {
		if on, err := ps.PowerState(ctx); err == nil && !on {
			return p.On(ctx)
		}
	}
	if c, ok := p.(Cycler); ok {
		return c.Cycle(ctx, delay)
	}
	if err := p.Off(ctx); err != nil {
		return err
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
	}
	return p.On(ctx)
}

// ResetPower resets the board through a Resetter; without one it cycles the
// power (CyclePower) and reports cycled.
func ResetPower(ctx context.Context, p Power, delay time.Duration) (cycled bool, err error) {
	if r, ok := p.(Resetter); ok {
		return false, r.Reset(ctx)
	}
	return true, CyclePower(ctx, p, delay)
}

// Transient is an optional Device extension for boards that exist only
// inside the process that opened them (a simulator, a QEMU child process):
// Close powers them off, so no power state outlives the jsplan command.
// Fallback: the board persists (real hardware keeps its power state).
type Transient interface {
	Transient() bool
}
