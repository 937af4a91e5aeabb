package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// DocumentFunc writes a document of p to its path in the policy: the
// runbook (the service's WriteRunbook) or the DR report (WriteReport).
type DocumentFunc func(ctx context.Context, p *policy.Policy, now time.Time) error

// docWriter keeps a document current: written at start, after every
// drill and after every policy reload (and, with every, after a check
// once that long has passed since the last write, for what changes
// without a drill: the backup runs), in the background so the loop never
// waits on repositories. Requests that come while one is written collapse
// into one more write, with the newest policy.
type docWriter struct {
	what  string                      // for the log: "runbook", "DR report"
	path  func(*policy.Policy) string // "" when p asks for none
	here  func() bool                 // nil, or whether this agent writes it (a fleet's leader)
	every time.Duration               // 0: no refresh after checks
	write DocumentFunc
	log   *slog.Logger
	clock Clock
	ctx   context.Context

	mu      sync.Mutex
	pending *policy.Policy
	running bool
	last    time.Time
	wg      sync.WaitGroup
	// written counts finished writes, for tests.
	written int
}

// kick asks for the document of p to be written.
func (w *docWriter) kick(p *policy.Policy) {
	if w == nil || w.write == nil || p == nil || w.path(p) == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = p
	if w.running {
		return
	}
	w.running = true
	w.wg.Add(1)
	go w.loop()
}

// refresh is kick once every has passed since the last write.
func (w *docWriter) refresh(p *policy.Policy) {
	if w == nil || w.every <= 0 {
		return
	}
	w.mu.Lock()
	due := w.clock.Now().Sub(w.last) >= w.every
	w.mu.Unlock()
	if due {
		w.kick(p)
	}
}

func (w *docWriter) loop() {
	defer w.wg.Done()
	for {
		w.mu.Lock()
		p := w.pending
		w.pending = nil
		if p == nil || w.ctx.Err() != nil {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		if w.here != nil && !w.here() {
			// Another agent of the fleet writes it; this one does once it
			// leads, at the first check after.
			continue
		}
		now := w.clock.Now()
		if err := w.write(w.ctx, p, now); err != nil {
			w.log.Warn(w.what+" not written; the previous one stays", "path", w.path(p), "error", errLine(err))
		} else {
			w.log.Info(w.what+" written", "path", w.path(p))
		}
		w.mu.Lock()
		w.written++
		w.last = now
		w.mu.Unlock()
	}
}

// wait waits for a write under way (cancelled with the daemon's context).
func (w *docWriter) wait() {
	if w != nil {
		w.wg.Wait()
	}
}
