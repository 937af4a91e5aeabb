package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

const everyFive = "    schedule: \"*/5 * * * *\"\n"

// TestScheduledRun: a backup starts at its slot, not before, between its
// hooks, and is recorded with what its child reported; the post hook
// learns the result.
func TestScheduledRun(t *testing.T) {
	h := newHarness(t, "", "")
	envFile := filepath.Join(h.dir, "post-hook.env")
	h.writePolicy(asset("db", everyFive+fmt.Sprintf("    hooks:\n      pre: \"echo getting ready\"\n"+
		"      post: \"env | grep ^LIFEBOAT_ | sort > %s\"\n", envFile)), "")
	h.start()
	if !hasLine(h.log.String(), `msg=scheduled asset=db schedule="*/5 * * * *" next=2025-03-14T10:05:00Z`) {
		t.Fatalf("the schedule is not logged:\n%s", h.log)
	}

	h.advanceTo(at(10, 4, 59))
	h.noChild()
	h.advanceTo(at(10, 5, 0))
	c := h.next()
	if c.Action != ActionBackup || c.Asset != "db" {
		t.Fatalf("child %s %s", c.Action, c.Asset)
	}
	fmt.Fprintln(c.Stdout, "snapshot 9ba1cc53 of db (full)")
	fmt.Fprintln(c.Stderr, "warning: something to keep")
	h.clock.Advance(41 * time.Second)
	c.ok("9ba1cc53aaaa")
	rs := h.waitRuns("the run to end", ended(1))
	r := rs[0]
	want := catalog.Run{ID: r.ID, Asset: "db", Kind: "postgres", Trigger: "schedule", Slot: at(10, 5, 0), Start: at(10, 5, 0),
		End: at(10, 5, 41), Result: catalog.OK, Snapshot: "9ba1cc53aaaa", Bytes: 1000, BytesStored: 100,
		Output: "snapshot 9ba1cc53 of db (full)\nwarning: something to keep", HookOutput: r.HookOutput}
	if !r.Slot.Equal(want.Slot) || !r.Start.Equal(want.Start) || !r.End.Equal(want.End) {
		t.Fatalf("run times %v %v %v", r.Slot, r.Start, r.End)
	}
	r.Slot, r.Start, r.End = want.Slot, want.Start, want.End
	if r != want {
		t.Fatalf("run recorded as\n%+v\nwant\n%+v", r, want)
	}
	if !strings.Contains(r.HookOutput, "--- pre hook ---\ngetting ready\n--- post hook ---") {
		t.Fatalf("hook output %q", r.HookOutput)
	}
	env, _ := os.ReadFile(envFile)
	for _, line := range []string{"LIFEBOAT_ASSET=db", "LIFEBOAT_KIND=postgres", "LIFEBOAT_TRIGGER=schedule",
		fmt.Sprintf("LIFEBOAT_RUN_ID=%d", r.ID), "LIFEBOAT_SLOT=2025-03-14T10:05:00Z", "LIFEBOAT_CONFIG=" + h.path,
		"LIFEBOAT_RESULT=ok", "LIFEBOAT_ERROR=", "LIFEBOAT_SNAPSHOT=9ba1cc53aaaa", "LIFEBOAT_BYTES=1000", "LIFEBOAT_BYTES_STORED=100"} {
		if !strings.Contains(string(env)+"\n", line+"\n") {
			t.Errorf("post hook environment lacks %s:\n%s", line, env)
		}
	}
	h.waitFor("the end logged", func() bool {
		return hasLine(h.log.String(), `msg="run ended" asset=db run=1 result=ok duration=41s snapshot=9ba1cc53 bytes=1000 stored=100`)
	})
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`msg=serving`, `msg="run started" asset=db kind=postgres run=1 trigger=schedule slot=2025-03-14T10:05:00Z`,
		`msg=stopping`, `msg=stopped`} {
		if !hasLine(h.log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, h.log)
		}
	}
}

// TestSkipWhileRunning: a slot that comes while the asset's run is still
// going is recorded as skipped, naming that run; the next slot after it
// ended runs.
func TestSkipWhileRunning(t *testing.T) {
	h := newHarness(t, asset("db", everyFive), "")
	h.start()
	h.advanceTo(at(10, 5, 0))
	c := h.next()
	h.advanceTo(at(10, 10, 0))
	h.advanceTo(at(10, 20, 0)) // two more slots: one skip record
	h.noChild()
	rs := h.waitRuns("the skip", func(rs []catalog.Run) bool { return countResult(rs, catalog.Skipped) == 2 })
	first, second := rs[0], rs[1]
	if second.Error != "the asset's previous run (#1, started 2025-03-14T10:05:00Z) was still going" || !second.Slot.Equal(at(10, 10, 0)) ||
		first.Error != "2 slots skipped: the asset's previous run (#1, started 2025-03-14T10:05:00Z) was still going" ||
		!first.Slot.Equal(at(10, 20, 0)) || first.Kind != "postgres" || first.Trigger != "schedule" {
		t.Fatalf("skips recorded as\n%+v\n%+v", first, second)
	}
	c.ok("aaaa")
	h.waitEnded(1)
	h.advanceTo(at(10, 25, 0))
	h.next().ok("bbbb")
	rs = h.waitRuns("the second run", ended(4))
	if rs[0].Trigger != "schedule" || !rs[0].Slot.Equal(at(10, 25, 0)) {
		t.Fatalf("run after the skips: %+v", rs[0])
	}
}

// TestCatchUp: at start, an asset whose newest scheduled run did not serve
// its slot, or whose schedule had a slot since, runs once at once; one
// whose last run failed, or that never ran, waits for its next slot.
func TestCatchUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		before  []catalog.Run // recorded by a previous daemon
		catchUp bool
		slot    time.Time // the slot the catch-up serves
		missed  string    // the log's missed_slots
	}{
		{name: "never ran"},
		{name: "served its slot", before: []catalog.Run{{Slot: at(10, 0, 0), Result: catalog.OK}}},
		{name: "failed its slot", before: []catalog.Run{{Slot: at(10, 0, 0), Result: catalog.Failed}}},
		{name: "aborted", before: []catalog.Run{{Slot: at(10, 0, 0), Result: catalog.Aborted}}, catchUp: true, slot: at(10, 0, 0)},
		{name: "left running", before: []catalog.Run{{Slot: at(10, 0, 0), Result: catalog.Running}}, catchUp: true, slot: at(10, 0, 0)},
		{name: "missed a slot", before: []catalog.Run{{Slot: at(9, 55, 0), Result: catalog.OK}}, catchUp: true, slot: at(10, 0, 0)},
		{name: "missed many slots", before: []catalog.Run{{Slot: at(8, 0, 0), Result: catalog.Failed}}, catchUp: true,
			slot: at(10, 0, 0), missed: "missed_slots=23"},
		{name: "skips do not count", before: []catalog.Run{{Slot: at(9, 55, 0), Result: catalog.OK}, {Slot: at(10, 0, 0), Result: catalog.Skipped}},
			catchUp: true, slot: at(10, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, asset("db", everyFive), "")
			for _, r := range tc.before {
				r.Asset, r.Kind, r.Trigger, r.Start = "db", "postgres", "schedule", r.Slot
				if r.Result != catalog.Running {
					r.End = r.Slot.Add(time.Minute)
				}
				if err := h.cat.Insert(context.Background(), &r); err != nil {
					t.Fatal(err)
				}
			}
			h.start()
			if tc.catchUp {
				c := h.next()
				c.ok("cccc")
				h.waitEnded(1)
				rs := h.waitRuns("the catch-up", ended(len(tc.before)+1))
				if r := rs[0]; r.Trigger != "catch-up" || !r.Slot.Equal(tc.slot) || !r.Start.Equal(t0) {
					t.Fatalf("catch-up recorded as %+v", r)
				}
				if !hasLine(h.log.String(), tc.missed) {
					t.Fatalf("log lacks %s:\n%s", tc.missed, h.log)
				}
			} else {
				h.noChild()
			}
			if tc.before != nil && tc.before[0].Result == catalog.Running {
				if r := h.runs()[1]; r.Result != catalog.Aborted || r.Error != "the daemon stopped during the run" || !r.End.Equal(t0) {
					t.Fatalf("run left running closed as %+v", r)
				}
			}
			// Whatever happened at start, the next slot runs once.
			h.advanceTo(at(10, 5, 0))
			c := h.next()
			c.ok("dddd")
			h.advanceTo(at(10, 9, 59))
			h.noChild()
			if rs := h.waitRuns("the run", func(rs []catalog.Run) bool { return rs[0].Result == catalog.OK }); rs[0].Trigger != "schedule" || !rs[0].Slot.Equal(at(10, 5, 0)) {
				t.Fatalf("run at the next slot: %+v", rs[0])
			}
		})
	}
}

// TestBoundsWorkers: with Jobs 1, runs of three assets due together run
// one after the other, in policy order; a slot that comes while an asset
// waits for the worker is skipped.
func TestBoundsWorkers(t *testing.T) {
	h := newHarness(t, asset("a", everyFive)+asset("b", everyFive)+asset("c", everyFive), "")
	h.cfg.Jobs = 1
	h.start()
	h.advanceTo(at(10, 5, 0))
	a := h.next()
	h.advanceTo(at(10, 10, 0))
	h.noChild()
	rs := h.waitRuns("three skips", func(rs []catalog.Run) bool { return countResult(rs, catalog.Skipped) == 3 })
	reasons := map[string]string{}
	for _, r := range rs {
		if r.Result == catalog.Skipped {
			reasons[r.Asset] = r.Error
		}
	}
	if !strings.Contains(reasons["a"], "was still going") || !strings.Contains(reasons["b"], "waiting for a free worker") ||
		!strings.Contains(reasons["c"], "waiting for a free worker") {
		t.Fatalf("skips: %v", reasons)
	}
	a.ok("aaaa")
	b := h.next()
	if b.Asset != "b" {
		t.Fatalf("second child is %s", b.Asset)
	}
	b.exit <- Exit{Result: &Result{Result: catalog.Failed, Error: "backup b: connect: no server"}, Status: "exited with status 1"}
	c := h.next()
	if c.Asset != "c" {
		t.Fatalf("third child is %s", c.Asset)
	}
	c.ok("cccc")
	h.waitRuns("every run to end", ended(6))
	if n := h.runner.mostAtOnce(); n != 1 {
		t.Fatalf("%d children at once with Jobs 1", n)
	}
}

// TestChildResults: what the daemon records of each way a child can end.
func TestChildResults(t *testing.T) {
	report := &evidence.DrillReport{ID: "drill-1", Asset: "db", Snapshot: "5555", Bytes: 77, Passed: true}
	for _, tc := range []struct {
		name   string
		action string
		exit   Exit
		want   catalog.Run
	}{
		{"ok", ActionBackup, Exit{Result: &Result{Result: catalog.OK, Snapshot: "1111", Bytes: 10, BytesStored: 5}},
			catalog.Run{Result: catalog.OK, Snapshot: "1111", Bytes: 10, BytesStored: 5}},
		{"failed", ActionBackup, Exit{Result: &Result{Result: catalog.Failed, Error: "backup db: connect: refused"}, Status: "exited with status 1"},
			catalog.Run{Result: catalog.Failed, Error: "backup db: connect: refused"}},
		{"stored, copy failed", ActionBackup, Exit{Result: &Result{Result: catalog.Failed, Error: "backup db: snapshot 2222 is stored in primary, but copy to dr: unreachable",
			Snapshot: "2222aaaa", Bytes: 10, BytesStored: 5}, Status: "exited with status 1"},
			catalog.Run{Result: catalog.Failed, Error: "backup db: snapshot 2222 is stored in primary, but copy to dr: unreachable", Snapshot: "2222aaaa", Bytes: 10, BytesStored: 5}},
		{"crashed", ActionBackup, Exit{Status: "exited with status 2"},
			catalog.Run{Result: catalog.Failed, Error: "backup exited with status 2"}},
		{"killed", ActionBackup, Exit{Status: "killed by signal killed"},
			catalog.Run{Result: catalog.Failed, Error: "backup killed by signal killed"}},
		{"exit 0 without a result", ActionBackup, Exit{},
			catalog.Run{Result: catalog.Failed, Error: "backup exited without reporting a result"}},
		{"unreadable result", ActionBackup, Exit{Status: "exited with status 1", ResultError: "its result does not decode: unexpected end of JSON input"},
			catalog.Run{Result: catalog.Failed, Error: "backup exited with status 1 (its result does not decode: unexpected end of JSON input)"}},
		{"ok, then a bad exit", ActionBackup, Exit{Result: &Result{Result: catalog.OK, Snapshot: "3333"}, Status: "exited with status 1"},
			catalog.Run{Result: catalog.Failed, Error: "backup reported success, then exited with status 1", Snapshot: "3333"}},
		{"stopped", ActionBackup, Exit{Result: &Result{Result: catalog.Aborted, Error: "backup db: context canceled"}, Status: "exited with status 1", Stopped: true},
			catalog.Run{Result: catalog.Aborted, Error: "the daemon stopped: backup db: context canceled"}},
		{"stopped while copying", ActionBackup, Exit{Result: &Result{Result: catalog.Aborted, Error: "backup db: snapshot 4444 is stored in primary, but copy to dr: context canceled", Snapshot: "4444"},
			Status: "exited with status 1", Stopped: true},
			catalog.Run{Result: catalog.Aborted, Error: "the daemon stopped: backup db: snapshot 4444 is stored in primary, but copy to dr: context canceled", Snapshot: "4444"}},
		{"stopped, ended anyway", ActionBackup, Exit{Result: &Result{Result: catalog.OK, Snapshot: "5555"}, Stopped: true},
			catalog.Run{Result: catalog.OK, Snapshot: "5555"}},
		{"stopped, died of it", ActionBackup, Exit{Status: "killed by signal terminated", Stopped: true},
			catalog.Run{Result: catalog.Aborted, Error: "the daemon stopped: backup killed by signal terminated"}},
		{"killed at the bound", ActionBackup, Exit{Status: "killed at the stop bound", Stopped: true, Killed: true},
			catalog.Run{Result: catalog.Aborted, Error: "the daemon stopped: killed at the stop bound"}},
		{"aborted by someone else", ActionBackup, Exit{Result: &Result{Result: catalog.Aborted, Error: "backup db: context canceled"}, Status: "exited with status 1"},
			catalog.Run{Result: catalog.Aborted, Error: "backup db: context canceled"}},
		{"drill passed", ActionDrill, Exit{Result: &Result{Result: catalog.OK, Snapshot: "5555", Bytes: 77, Drill: report}},
			catalog.Run{Result: catalog.OK, Snapshot: "5555", Bytes: 77}},
		{"drill crashed", ActionDrill, Exit{Status: "killed by signal segmentation fault"},
			catalog.Run{Result: catalog.Failed, Error: "drill killed by signal segmentation fault"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &job{action: tc.action, rec: catalog.Run{Result: catalog.Running}}
			settle(j, tc.exit)
			if j.rec != tc.want {
				t.Fatalf("recorded\n%+v\nwant\n%+v", j.rec, tc.want)
			}
			if tc.exit.Result != nil && j.report != tc.exit.Result.Drill {
				t.Fatalf("drill report %v", j.report)
			}
			if j.killed {
				t.Fatal("killed set by settle")
			}
		})
	}
}

// TestStop: a stop asks running children to stop and records their runs
// aborted; runs waiting for a worker are not recorded; Run returns nil.
func TestStop(t *testing.T) {
	h := newHarness(t, asset("a", everyFive)+asset("b", everyFive), "")
	h.cfg.Jobs = 1
	h.start()
	h.advanceTo(at(10, 5, 0))
	c := h.next()
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	<-c.Stop
	c.exit <- Exit{Result: &Result{Result: catalog.Aborted, Error: "backup a: context canceled"}, Status: "exited with status 1", Stopped: true}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	rs := h.runs()
	if len(rs) != 1 || rs[0].Asset != "a" || rs[0].Result != catalog.Aborted || rs[0].Error != "the daemon stopped: backup a: context canceled" {
		t.Fatalf("runs after a stop: %+v", rs)
	}
	h.noChild()
}

// TestStopBound: a child still going at the stop bound is killed; its run
// is aborted, and Run says it had to kill.
func TestStopBound(t *testing.T) {
	h := newHarness(t, asset("db", everyFive), "")
	h.cfg.StopTimeout = 30 * time.Second
	h.start()
	h.advanceTo(at(10, 5, 0))
	c := h.next()
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	<-c.Stop
	h.clock.Advance(29 * time.Second)
	select {
	case <-c.Kill:
		t.Fatal("killed before the bound")
	case <-time.After(20 * time.Millisecond):
	}
	h.clock.Advance(time.Second)
	<-c.Kill
	c.exit <- Exit{Status: "killed at the stop bound", Stopped: true, Killed: true}
	err := <-stopped
	if err == nil || !strings.Contains(err.Error(), "1 run(s) did not end within --stop-timeout 30s and were killed") {
		t.Fatalf("Run returned %v", err)
	}
	if r := h.runs()[0]; r.Result != catalog.Aborted || r.Error != "the daemon stopped: killed at the stop bound" || !r.End.Equal(at(10, 5, 30)) {
		t.Fatalf("run killed at the bound: %+v", r)
	}
}

// TestStopBoundKillsHook: a pre hook that ignores SIGTERM is killed with
// its process group at the bound.
func TestStopBoundKillsHook(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "hook-running")
	h := newHarness(t, asset("db", everyFive+fmt.Sprintf("    hooks:\n      pre: \"trap '' TERM; touch %s; sleep 60\"\n", marker)), "")
	h.cfg.StopTimeout = 30 * time.Second
	h.start()
	h.advanceTo(at(10, 5, 0))
	h.waitFor("the pre hook", func() bool { _, err := os.Stat(marker); return err == nil })
	stopped := make(chan error, 1)
	go func() { stopped <- h.stop() }()
	h.waitFor("the stop", func() bool { return hasLine(h.log.String(), "msg=stopping") })
	h.clock.Advance(30 * time.Second)
	if err := <-stopped; err == nil || !strings.Contains(err.Error(), "were killed") {
		t.Fatalf("Run returned %v", err)
	}
	if r := h.runs()[0]; r.Result != catalog.Aborted || r.Error != "the daemon stopped during the pre hook" {
		t.Fatalf("run killed at the bound recorded as %+v", r)
	}
	h.noChild()
}

// TestFailingPreHook: the run stops at the hook, whose output is in the
// record; no child runs; the post hook learns the result.
func TestFailingPreHook(t *testing.T) {
	h := newHarness(t, "", "")
	envFile := filepath.Join(h.dir, "post-hook.env")
	h.writePolicy(asset("db", everyFive+fmt.Sprintf("    hooks:\n      pre: \"echo checking space; echo disk full >&2; exit 3\"\n"+
		"      post: \"env | grep ^LIFEBOAT_ > %s\"\n      timeout: 10s\n", envFile)), "")
	h.start()
	h.advanceTo(at(10, 5, 0))
	r := h.waitRuns("the failed run", ended(1))[0]
	if r.Result != catalog.Failed || r.Error != "pre hook exited with status 3: disk full" || r.Snapshot != "" ||
		!strings.Contains(r.HookOutput, "checking space") || !strings.Contains(r.HookOutput, "disk full") || r.Output != "" {
		t.Fatalf("run with a failing pre hook recorded as %+v", r)
	}
	h.noChild()
	env, _ := os.ReadFile(envFile)
	if !strings.Contains(string(env), "LIFEBOAT_RESULT=failed") || !strings.Contains(string(env), "LIFEBOAT_ERROR=pre hook exited with status 3") {
		t.Fatalf("post hook environment:\n%s", env)
	}
}

// TestHookTimeout: a hook is killed, with what it started, at its
// timeout on the daemon's clock.
func TestHookTimeout(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "hook-running")
	h := newHarness(t, asset("db", everyFive+fmt.Sprintf("    hooks:\n      pre: \"touch %s; sleep 60\"\n      timeout: 2m\n", marker)), "")
	h.start()
	h.advanceTo(at(10, 5, 0))
	h.waitFor("the pre hook", func() bool { _, err := os.Stat(marker); return err == nil })
	h.clock.Advance(119 * time.Second)
	time.Sleep(20 * time.Millisecond)
	if r := h.runs()[0]; r.Result != catalog.Running {
		t.Fatalf("hook ended before its timeout: %+v", r)
	}
	h.clock.Advance(time.Second)
	r := h.waitRuns("the timeout", ended(1))[0]
	if r.Result != catalog.Failed || r.Error != "pre hook timed out after 2m0s" || !r.End.Equal(at(10, 7, 0)) {
		t.Fatalf("run whose hook timed out: %+v", r)
	}
	h.noChild()
}

// TestReload: a policy that does not load, moves the state directory or
// the metrics address is refused and the running one kept; a valid one
// replaces the schedules, without catching up; one without schedules runs
// nothing more.
func TestReload(t *testing.T) {
	h := newHarness(t, asset("db", everyFive), "")
	h.start()
	reload := func(want string) {
		t.Helper()
		n := strings.Count(h.log.String(), want)
		h.d.Reload()
		h.waitFor(want, func() bool { return strings.Count(h.log.String(), want) > n })
	}

	good, _ := os.ReadFile(h.path)
	os.WriteFile(h.path, append([]byte("bogus_key: 1\n"), good...), 0o600)
	reload("reload refused")
	if !hasLine(h.log.String(), "bogus_key") {
		t.Fatalf("the refusal does not say why:\n%s", h.log)
	}
	os.WriteFile(h.path, []byte(strings.Replace(string(good), "state_dir: "+h.dir+"/state", "state_dir: "+h.dir+"/elsewhere", 1)), 0o600)
	reload("reload refused")
	if !hasLine(h.log.String(), "restart lifeboat serve to move it") {
		t.Fatalf("the refusal does not say why:\n%s", h.log)
	}
	h.writePolicy(asset("db", everyFive), "metrics: { listen: \"127.0.0.1:0\" }\n")
	reload("reload refused")
	if !hasLine(h.log.String(), `metrics.listen changed from \"\" to \"127.0.0.1:0\"`) {
		t.Fatalf("the refusal does not say why:\n%s", h.log)
	}
	// The old schedule keeps running.
	h.advanceTo(at(10, 5, 0))
	h.next().ok("aaaa")
	h.waitEnded(1)

	// A changed schedule starts at its next slot, a new one too.
	h.writePolicy(asset("db", "    schedule: \"0 * * * *\"\n")+asset("new", everyFive), "")
	reload("policy reloaded")
	for m := 10; m < 60; m += 5 {
		h.advanceTo(at(10, m, 0))
		if c := h.next(); c.Asset != "new" {
			t.Fatalf("child of %s at 10:%d", c.Asset, m)
		} else {
			c.ok("bbbb")
		}
		h.waitEnded(2 + (m-10)/5)
	}
	h.advanceTo(at(11, 0, 0))
	h.next().ok("cccc")
	h.next().ok("dddd")
	h.waitEnded(13)
	h.noChild()
	if !hasLine(h.log.String(), "trigger=catch-up") {
		// fine: no catch-up after a reload
	} else {
		t.Fatalf("a reload caught up:\n%s", h.log)
	}

	// Without schedules nothing more runs.
	h.writePolicy(asset("db", "")+asset("new", ""), "")
	reload("policy reloaded")
	if !hasLine(h.log.String(), `msg="policy reloaded" assets=2 scheduled=0`) {
		t.Fatalf("reload not logged:\n%s", h.log)
	}
	for _, hour := range []int{11, 12, 13} {
		h.advanceTo(at(hour, 0, 0))
	}
	h.noChild()
	if n := len(h.runs()); n != 13 {
		t.Fatalf("%d runs", n)
	}
}

// TestReloadDropsQueuedRun: a run waiting for a worker whose asset the new
// policy no longer schedules is dropped.
func TestReloadDropsQueuedRun(t *testing.T) {
	h := newHarness(t, asset("a", everyFive)+asset("b", everyFive), "")
	h.cfg.Jobs = 1
	h.start()
	h.advanceTo(at(10, 5, 0))
	a := h.next()
	h.writePolicy(asset("a", everyFive)+asset("b", ""), "")
	h.d.Reload()
	h.waitFor("the reload", func() bool { return hasLine(h.log.String(), "policy reloaded") })
	a.ok("aaaa")
	h.waitRuns("a's run", ended(1))
	h.advanceTo(at(10, 9, 59))
	h.noChild()
}

// TestDrill: a drill schedule is a job of its own, ASSET#drill, run as a
// drill child; its report reaches the metrics.
func TestDrill(t *testing.T) {
	h := newHarness(t, asset("db", everyFive+"    drill:\n      schedule: \"0 * * * *\"\n"), "")
	h.start()
	h.advanceTo(at(11, 0, 0))
	c1, c2 := h.next(), h.next()
	if c1.Action == ActionDrill { // they start side by side
		c1, c2 = c2, c1
	}
	if c1.Asset+c1.Action+c2.Asset+c2.Action != "dbbackupdbdrill" {
		t.Fatalf("children %s %s, %s %s", c1.Action, c1.Asset, c2.Action, c2.Asset)
	}
	c1.ok("aaaa")
	rep := &evidence.DrillReport{Version: 1, ID: "d-1", Asset: "db", Kind: "postgres", Snapshot: "aaaa", Bytes: 42, Passed: true,
		RTOSeconds: 12, RTOTargetSeconds: 3600, Started: at(11, 0, 0), Ended: at(11, 0, 12)}
	c2.exit <- Exit{Result: &Result{Result: catalog.OK, Snapshot: "aaaa", Bytes: 42, Drill: rep}}
	h.waitEnded(2)
	rs := h.waitRuns("both runs", ended(2))
	var drill catalog.Run
	for _, r := range rs {
		if r.Kind == "drill" {
			drill = r
		}
	}
	if drill.Asset != "db#drill" || drill.Result != catalog.OK || drill.Snapshot != "aaaa" || drill.Trigger != "schedule" || drill.HookOutput != "" {
		t.Fatalf("drill recorded as %+v", drill)
	}
	h.waitFor("the drill's metrics", func() bool {
		return strings.Contains(scrape(h.cfg.Metrics), `lifeboat_drill_last_passed{asset="db"} 1`)
	})
	// A drill slot while the drill runs is skipped, as a drill.
	h.advanceTo(at(12, 0, 0))
	c1, c2 = h.next(), h.next()
	if c2.Action != ActionDrill {
		c1, c2 = c2, c1
	}
	h.advanceTo(at(13, 0, 0))
	rs = h.waitRuns("the skips", func(rs []catalog.Run) bool { return countResult(rs, catalog.Skipped) == 2 })
	for _, r := range rs {
		if r.Result == catalog.Skipped && r.Asset == "db#drill" && r.Kind != "drill" {
			t.Fatalf("drill skip recorded as %+v", r)
		}
	}
	c1.ok("bbbb")
	c2.exit <- Exit{Result: &Result{Result: catalog.Failed, Error: "drill db: check rows: 0 rows"}, Status: "exited with status 1"}
	h.waitRuns("the runs to end", ended(6))
}

// TestChecksDrainsAndAlerts: a check at start and every check.interval on
// the daemon's clock, its outcome in the metrics and the alerts; a drain
// at start and every DrainInterval, its failure logged once.
func TestChecksDrainsAndAlerts(t *testing.T) {
	var mu sync.Mutex
	var checks []time.Time
	failing := true
	alerts := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msg struct {
			Status string `json:"status"`
		}
		json.Unmarshal(b, &msg)
		alerts <- msg.Status
	}))
	defer hook.Close()
	h := newHarness(t, asset("db", ""), fmt.Sprintf("check: { interval: 5m }\nalerts:\n  - kind: webhook\n    url: %s\n    secret: s3cret\n    repeat: 0s\n", hook.URL))
	h.cfg.Check = func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		checks = append(checks, now)
		return []health.Result{{Asset: "db", Check: health.CheckBackup, OK: !failing, Message: "no backup since the slot"}}, nil
	}
	var drains []time.Time
	drainErr := errors.New("copy to dr: unreachable")
	h.cfg.Drain = func(ctx context.Context, p *policy.Policy) error {
		mu.Lock()
		defer mu.Unlock()
		drains = append(drains, h.clock.Now())
		return drainErr
	}
	numChecks := func() int { mu.Lock(); defer mu.Unlock(); return len(checks) }
	numDrains := func() int { mu.Lock(); defer mu.Unlock(); return len(drains) }
	h.start()
	h.waitFor("the first check", func() bool { return numChecks() == 1 && numDrains() == 1 })
	if ev := <-alerts; ev != "firing" {
		t.Fatalf("alert %q", ev)
	}
	h.waitFor("the metrics", func() bool {
		return strings.Contains(scrape(h.cfg.Metrics), `lifeboat_check_failing{asset="db",check="backup"} 1`)
	})
	for i := 1; i <= 30; i++ { // five minutes, in 10s steps
		h.advanceTo(t0.Add(time.Duration(i) * 10 * time.Second))
		h.waitFor("the drain", func() bool { return numDrains() == i+1 })
	}
	h.waitFor("the second check", func() bool { return numChecks() == 2 })
	if strings.Count(h.log.String(), "copy queue not drained") != 1 {
		t.Fatalf("a lasting drain failure is not logged once:\n%s", h.log)
	}
	mu.Lock()
	failing, drainErr = false, nil
	if !checks[1].Equal(t0.Add(5*time.Minute)) || !drains[3].Equal(t0.Add(30*time.Second)) {
		t.Fatalf("checks at %v, drains at %v", checks, drains)
	}
	mu.Unlock()
	h.advanceTo(t0.Add(10 * time.Minute))
	h.waitFor("the third check", func() bool { return numChecks() == 3 })
	if ev := <-alerts; ev != "resolved" {
		t.Fatalf("alert %q", ev)
	}
	h.waitFor("the drain's recovery", func() bool { return hasLine(h.log.String(), "copy queues drained again") })
}

// TestSeedPlatformPolicy: the sample policy in docs parses, and every
// asset in it is scheduled.
func TestSeedPlatformPolicy(t *testing.T) {
	p, err := app.LoadPolicy("../../docs/examples/seed-platform.yaml", app.Kinds())
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range p.Assets {
		if _, err := policy.ParseSchedule(a.Schedule); a.Schedule == "" || err != nil {
			t.Fatalf("asset %s: schedule %q: %v", a.Name, a.Schedule, err)
		}
	}
	jobs, err := Jobs(p)
	if err != nil {
		t.Fatal(err)
	}
	scheduled := map[string]bool{}
	for _, j := range jobs {
		scheduled[j.Asset] = true
	}
	for _, a := range p.Assets {
		if !scheduled[a.Name] {
			t.Fatalf("asset %s has no job", a.Name)
		}
	}
	s := scheduler.New()
	s.Load(jobs, time.Date(2024, 3, 30, 12, 0, 0, 0, time.UTC), nil)
	// The ledger's 02:00 Oslo backup on the night clocks spring forward.
	if got := s.NextFor("ledger"); !got.Equal(time.Date(2024, 3, 31, 1, 0, 0, 0, time.UTC)) {
		t.Fatalf("ledger's next run %v", got)
	}
}
