package daemon

import (
	"context"
	"time"
)

// Clock is the daemon's time: the time now, and timers that fire at a
// given time. Every schedule, interval, timeout and record of the daemon
// reads it, so tests drive the daemon on a fake clock instead of sleeping.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once the clock reaches t (at
	// once when t is not after Now). Deadlines are absolute, so one
	// computed before an event is not moved by the time it takes to arm.
	NewTimer(t time.Time) Timer
}

// Timer is a timer of a Clock.
type Timer interface {
	// C receives the time once the timer fires.
	C() <-chan time.Time
	// Stop keeps the timer from firing; it reports whether it stopped it.
	Stop() bool
}

// System is the real clock. A timer for a wall-clock time (a schedule
// slot) fires after the duration between now and then, as measured now;
// the daemon bounds its sleeps, so a clock stepped meanwhile delays it by
// at most that bound.
var System Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) NewTimer(t time.Time) Timer {
	return systemTimer{time.NewTimer(time.Until(t))}
}

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time { return t.t.C }
func (t systemTimer) Stop() bool          { return t.t.Stop() }

// withDeadline is context.WithDeadline on clock: ctx is cancelled when the
// clock reaches t.
func withDeadline(ctx context.Context, clock Clock, t time.Time) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	timer := clock.NewTimer(t)
	go func() {
		select {
		case <-timer.C():
			cancel()
		case <-ctx.Done():
			timer.Stop()
		}
	}()
	return ctx, cancel
}
