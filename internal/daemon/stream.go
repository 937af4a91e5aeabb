package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// StreamFunc runs the continuous streams of p's assets (postgres WAL
// streaming) until ctx ends. It returns early only when every stream
// stopped on an error reconnecting cannot cure.
type StreamFunc func(ctx context.Context, p *policy.Policy) error

// streams keeps the policy's streams running beside the schedule: started
// with the daemon, restarted on a reload (a stream resumes from its slot,
// so a restart loses nothing), stopped at shutdown.
type streams struct {
	run    StreamFunc
	parent context.Context
	log    interface {
		Error(msg string, args ...any)
	}
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *streams) start(p *policy.Policy) {
	if s == nil || s.run == nil {
		return
	}
	ctx, cancel := context.WithCancel(s.parent)
	done := make(chan struct{})
	s.cancel, s.done = cancel, done
	go func() {
		defer close(done)
		if err := s.run(ctx, p); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Error("streams stopped", "error", errLine(err))
		}
	}()
}

// stop cancels the streams and waits for them up to wait: each stores
// what it received before it returns.
func (s *streams) stop(wait time.Duration) {
	if s == nil || s.cancel == nil {
		return
	}
	s.cancel()
	select {
	case <-s.done:
	case <-time.After(wait):
	}
	s.cancel, s.done = nil, nil
}

func (s *streams) restart(p *policy.Policy) {
	s.stop(backgroundStopWait)
	s.start(p)
}
