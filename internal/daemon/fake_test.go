package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// fakeClock is a Clock that moves only when a test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]bool
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, timers: map[*fakeTimer]bool{}}
}

type fakeTimer struct {
	c  *fakeClock
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(at time.Time) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: at, ch: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.ch <- c.now
	} else {
		c.timers[t] = true
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	armed := t.c.timers[t]
	delete(t.c.timers, t)
	return armed
}

// Set moves the clock to now (forward) and fires the timers due.
func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	for t := range c.timers {
		if !t.at.After(now) {
			t.ch <- now
			delete(c.timers, t)
		}
	}
}

func (c *fakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// fakeRunner hands each child to the test, which answers with its Exit.
type fakeRunner struct {
	calls chan *call
	mu    sync.Mutex
	now   int // children running
	most  int // the most at once
}

func newFakeRunner() *fakeRunner { return &fakeRunner{calls: make(chan *call, 16)} }

// call is one child the daemon started.
type call struct {
	Child
	exit chan Exit
}

func (r *fakeRunner) Run(c Child) Exit {
	r.mu.Lock()
	r.now++
	r.most = max(r.most, r.now)
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.now--
		r.mu.Unlock()
	}()
	cl := &call{Child: c, exit: make(chan Exit)}
	r.calls <- cl
	return <-cl.exit
}

func (r *fakeRunner) mostAtOnce() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.most
}

// ok ends the child as a backup that stored a snapshot.
func (c *call) ok(snapshot string) {
	c.exit <- Exit{Result: &Result{Version: ResultVersion, Result: catalog.OK, Snapshot: snapshot, Bytes: 1000, BytesStored: 100}}
}

// syncBuffer is a log the test reads while the daemon writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// t0 is when the tests' daemons start: a Friday, 10:01 UTC.
var t0 = time.Date(2025, 3, 14, 10, 1, 0, 0, time.UTC)

// harness is a daemon on a fake clock with a fake runner, a real catalog
// in a temporary state directory and a policy file.
type harness struct {
	t      *testing.T
	dir    string
	path   string // the policy file
	clock  *fakeClock
	runner *fakeRunner
	cat    *catalog.Catalog
	log    *syncBuffer
	cfg    Config
	d      *Daemon
	cancel context.CancelFunc
	ended  chan error

	mu   sync.Mutex
	idle time.Time // the clock time of the loop's last wait
}

// newHarness writes a policy whose assets section is assets (and whose
// top level gets extra) and opens its catalog; start runs the daemon.
// assets may be empty when the test writes the policy itself.
func newHarness(t *testing.T, assets, extra string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: newFakeClock(t0), runner: newFakeRunner(), log: &syncBuffer{}}
	h.path = filepath.Join(h.dir, "lifeboat.yaml")
	h.writePolicy(assets, extra)
	var err error
	h.cat, err = catalog.Open(context.Background(), catalog.Path(filepath.Join(h.dir, "state")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.cat.Close() })
	h.cfg = Config{LoadPolicy: func() (*policy.Policy, error) { return app.LoadPolicy(h.path, app.Kinds()) }, ConfigPath: h.path,
		Log: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})), Clock: h.clock,
		Runner: h.runner, Catalog: h.cat, Metrics: metrics.New(), Jobs: 2, StopTimeout: time.Minute, DrainInterval: 10 * time.Second}
	return h
}

func (h *harness) writePolicy(assets, extra string) {
	h.t.Helper()
	doc := fmt.Sprintf("state_dir: %s\nrepositories:\n  - name: primary\n    url: file://%s\n    key_file: %s\n%sassets:\n%s",
		filepath.Join(h.dir, "state"), filepath.Join(h.dir, "repo"), filepath.Join(h.dir, "repo.key"), extra, assets)
	if err := os.WriteFile(h.path, []byte(doc), 0o600); err != nil {
		h.t.Fatal(err)
	}
}

// asset is the YAML of a postgres asset with extra keys.
func asset(name, extra string) string {
	return fmt.Sprintf("  - name: %s\n    kind: postgres\n    pgdata: /nonexistent/%s\n    dsn: \"host=/nonexistent\"\n    repositories: [primary]\n%s", name, name, extra)
}

// start makes the daemon of h.cfg, with the policy file as it is now,
// and runs it until the test ends.
func (h *harness) start() {
	h.t.Helper()
	p, err := h.cfg.LoadPolicy()
	if err != nil {
		h.t.Fatal(err)
	}
	h.cfg.Policy = p
	d, err := New(h.cfg)
	if err != nil {
		h.t.Fatal(err)
	}
	h.d = d
	d.testIdle = func(now time.Time) {
		h.mu.Lock()
		h.idle = now
		h.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.ended = cancel, make(chan error, 1)
	go func() { h.ended <- d.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case <-h.ended:
		case <-time.After(10 * time.Second):
			h.t.Errorf("the daemon did not stop\n%s", h.log)
		}
	})
	h.settle()
}

// settle waits until the loop has done what is due at the clock's time.
func (h *harness) settle() {
	h.t.Helper()
	now := h.clock.Now()
	h.waitFor("the loop to settle at "+now.Format(time.TimeOnly), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return !h.idle.Before(now)
	})
}

// advanceTo moves the clock to t and waits for the loop to settle.
func (h *harness) advanceTo(t time.Time) {
	h.t.Helper()
	h.clock.Set(t)
	h.settle()
}

// at is t0's day at hh:mm:ss.
func at(hh, mm, ss int) time.Time { return time.Date(2025, 3, 14, hh, mm, ss, 0, time.UTC) }

// stop cancels Run and returns its error.
func (h *harness) stop() error {
	h.t.Helper()
	h.cancel()
	select {
	case err := <-h.ended:
		h.ended <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatalf("the daemon did not stop\n%s", h.log)
		return nil
	}
}

// next is the next child the daemon started.
func (h *harness) next() *call {
	h.t.Helper()
	select {
	case c := <-h.runner.calls:
		return c
	case <-time.After(10 * time.Second):
		h.t.Fatalf("no child started\n%s", h.log)
		return nil
	}
}

// noChild fails if a child has started that the test has not taken.
func (h *harness) noChild() {
	h.t.Helper()
	select {
	case c := <-h.runner.calls:
		h.t.Fatalf("unexpected child %s %s\n%s", c.Action, c.Asset, h.log)
	default:
	}
}

// runs lists the runs recorded, newest first.
func (h *harness) runs() []catalog.Run {
	h.t.Helper()
	rs, err := h.cat.Runs(context.Background(), catalog.Filter{})
	if err != nil {
		h.t.Fatal(err)
	}
	return rs
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s\n%s", what, h.log)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitRuns waits until the runs recorded satisfy cond, and returns them.
func (h *harness) waitRuns(what string, cond func([]catalog.Run) bool) []catalog.Run {
	h.t.Helper()
	var rs []catalog.Run
	h.waitFor(what, func() bool { rs = h.runs(); return cond(rs) })
	return rs
}

// ended reports whether every run recorded has ended and n were recorded.
func ended(n int) func([]catalog.Run) bool {
	return func(rs []catalog.Run) bool {
		if len(rs) != n {
			return false
		}
		for _, r := range rs {
			if r.Result == catalog.Running {
				return false
			}
		}
		return true
	}
}

// scrape is what the metrics expose.
func scrape(m *metrics.Metrics) string {
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func countResult(rs []catalog.Run, result catalog.Result) int {
	n := 0
	for _, r := range rs {
		if r.Result == result {
			n++
		}
	}
	return n
}

func hasLine(log, substr string) bool { return strings.Contains(log, substr) }

// waitEnded waits until the loop has taken the end of n runs in all, so
// their assets may run again.
func (h *harness) waitEnded(n int) {
	h.t.Helper()
	h.waitFor(fmt.Sprintf("%d runs to end", n), func() bool { return strings.Count(h.log.String(), `msg="run ended"`) >= n })
}
