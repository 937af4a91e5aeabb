package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// The runbook is written at start, after a drill ends (not after a
// backup) and after a reload, with the policy then in force; a failed
// write is logged and the daemon goes on.
func TestRunbookAfterDrillAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runbook.md")
	h := newHarness(t, asset("db", everyFive+"    drill:\n      schedule: \"0 * * * *\"\n"), "runbook: { path: "+path+" }\n")
	var mu sync.Mutex
	var writes []string // the policy's assets and the drills ended at each write
	fail := false
	h.cfg.Runbook = func(ctx context.Context, p *policy.Policy, now time.Time) error {
		// The child records its drill report itself; the daemon, the run.
		rs, err := h.cat.Runs(ctx, catalog.Filter{})
		if err != nil {
			return err
		}
		var ds []catalog.Run
		for _, r := range rs {
			if r.Kind == "drill" && r.Result == catalog.OK {
				ds = append(ds, r)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		var names []string
		for _, a := range p.Assets {
			names = append(names, a.Name)
		}
		writes = append(writes, strings.Join(names, ",")+" drills="+strings.Repeat("d", len(ds)))
		if fail {
			return os.ErrPermission
		}
		return nil
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(writes)
	}
	h.start()
	h.waitFor("the runbook at start", func() bool { return count() == 1 })

	// A backup does not change the runbook; a drill does, once recorded.
	h.advanceTo(at(10, 5, 0))
	h.next().ok("aaaa")
	h.waitEnded(1)
	h.advanceTo(at(11, 0, 0))
	c1, c2 := h.next(), h.next()
	if c1.Action == ActionDrill {
		c1, c2 = c2, c1
	}
	c1.ok("bbbb")
	rep := &evidence.DrillReport{Version: 1, ID: "d-1", Asset: "db", Kind: "postgres", Snapshot: "bbbb", Bytes: 42, Passed: true,
		RTOSeconds: 12, Started: at(11, 0, 0), Ended: at(11, 0, 12), Phases: []evidence.Phase{{Name: evidence.PhaseFetch, Seconds: 2}}}
	c2.exit <- Exit{Result: &Result{Result: catalog.OK, Snapshot: "bbbb", Bytes: 42, Drill: rep}}
	h.waitEnded(3)
	h.waitFor("the runbook after the drill", func() bool { return count() == 2 })
	mu.Lock()
	if writes[1] != "db drills=d" {
		t.Fatalf("written after the drill with %q, want the drill on record", writes[1])
	}
	fail = true
	mu.Unlock()

	// A reload writes it with the new policy; a failure is logged.
	good, _ := os.ReadFile(h.path)
	os.WriteFile(h.path, []byte(strings.Replace(string(good), "assets:\n", "assets:\n"+asset("db2", ""), 1)), 0o600)
	h.d.Reload()
	h.waitFor("the runbook after the reload", func() bool { return count() == 3 })
	h.waitFor("the failure logged", func() bool { return hasLine(h.log.String(), "runbook not written; the previous one stays") })
	mu.Lock()
	defer mu.Unlock()
	if writes[2] != "db2,db drills=d" {
		t.Fatalf("written after the reload with %q", writes[2])
	}
}

// The DR report is written by the agent that writes it (ReportHere: in a
// fleet, the leader) at start and after a check once an hour has passed
// since the last write; an agent that does not lead writes none, and
// writes at its first check once it leads.
func TestReportLeaderOnlyAndHourly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dr.html")
	h := newHarness(t, asset("db", ""), "report: { path: "+path+" }\ncheck: { interval: 30m }\n")
	var checks, writes atomic.Int32
	h.cfg.Check = func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error) {
		checks.Add(1)
		return nil, nil
	}
	var mu sync.Mutex
	var at []time.Time
	h.cfg.Report = func(ctx context.Context, p *policy.Policy, now time.Time) error {
		if p.Report.Path != path {
			t.Errorf("report written for %q", p.Report.Path)
		}
		mu.Lock()
		at = append(at, now)
		mu.Unlock()
		writes.Add(1)
		return nil
	}
	var leads atomic.Bool
	h.cfg.ReportHere = leads.Load
	h.start()
	h.waitFor("the first check", func() bool { return checks.Load() == 1 })
	if n := writes.Load(); n != 0 {
		t.Fatalf("an agent that does not lead wrote the report %d times", n)
	}
	leads.Store(true)
	for i, want := range []int32{1, 1, 2} { // checks at +30m, +60m, +90m
		h.advanceTo(t0.Add(time.Duration(i+1) * 30 * time.Minute))
		h.waitFor("the check", func() bool { return checks.Load() == int32(i+2) })
		h.waitFor("the report", func() bool { return writes.Load() == want })
	}
	mu.Lock()
	defer mu.Unlock()
	if !at[0].Equal(t0.Add(30*time.Minute)) || !at[1].Equal(t0.Add(90*time.Minute)) {
		t.Fatalf("report written at %v, want at the first check as leader and an hour later", at)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}
