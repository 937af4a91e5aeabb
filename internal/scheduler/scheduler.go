// Package scheduler decides when the daemon backs each asset up. It is
// pure logic: the caller passes the time in (a real clock in lifeboat
// serve, a fake one in tests) and gets back the runs to start and the
// slots to record as skipped; it starts nothing itself.
//
// The rules, which docs/daemon.md states for operators:
//
//   - One job per asset at a time. A slot that comes while the asset's
//     previous run is still going (or still waiting for a free worker) is
//     not queued behind it: it is skipped, and reported so the caller can
//     record it.
//   - Slots missed while the daemon was down, or while the host slept, are
//     made up by one run (a catch-up), not one run per missed slot.
//   - Wall-clock schedules fire once per wall time across daylight-saving
//     changes (see NextSlot).
package scheduler

import (
	"time"

	"github.com/robfig/cron/v3"
)

// Trigger says why a run started.
type Trigger string

// Triggers.
const (
	TriggerSchedule Trigger = "schedule" // its slot came
	TriggerCatchUp  Trigger = "catch-up" // one or more slots were missed
	TriggerManual   Trigger = "manual"   // an operator asked for it
)

// Job is an asset's schedule.
type Job struct {
	Asset string
	// Spec is the schedule as written; a reload keeps the state of an
	// asset whose Spec did not change.
	Spec     string
	Schedule cron.Schedule
}

// Run is a run to start now.
type Run struct {
	Asset   string
	Slot    time.Time // the newest slot the run serves
	Trigger Trigger
	Missed  int // slots it serves beyond Slot (catch-ups); 0 otherwise
}

// Last is what the daemon's record says of an asset's newest scheduled
// run: the slot it was for, and whether it served that slot (it ended, well
// or not) or not (a stop or a crash interrupted it).
type Last struct {
	Slot   time.Time
	Served bool
}

// Skip is a slot that came while the asset's previous run was still going.
type Skip struct {
	Asset string
	Slot  time.Time
	Count int // slots skipped at once (more than 1 after a stall)
}

// maxCollapse bounds how many missed slots are walked to find the newest;
// beyond it the run serves "now" (an @every 1s schedule after a month
// away would otherwise take millions of steps).
const maxCollapse = 10000

type entry struct {
	job  Job
	next time.Time // zero: never fires again
	// catchUp marks next as a slot missed while the daemon was down.
	catchUp bool
}

// Scheduler holds every asset's next slot and which assets are busy.
type Scheduler struct {
	entries map[string]*entry
	order   []string // policy order, so runs due together start in it
	busy    map[string]bool
}

// New returns a scheduler without jobs.
func New() *Scheduler {
	return &Scheduler{entries: map[string]*entry{}, busy: map[string]bool{}}
}

// Load installs jobs, replacing the previous set; assets absent from jobs
// stop being scheduled (a run of theirs still going stays busy until
// Done). An asset whose Spec is unchanged keeps its next slot; a new or
// changed one starts from its first slot after now.
//
// last gives, per asset, its newest scheduled run (nil on a reload). An
// asset missed a slot while the daemon was down when that run did not serve
// its slot, or when the schedule had a slot after it and not after now; it
// gets one catch-up run. An asset without a record starts at its next slot,
// as cron would.
func (s *Scheduler) Load(jobs []Job, now time.Time, last map[string]Last) {
	entries := make(map[string]*entry, len(jobs))
	order := make([]string, 0, len(jobs))
	for _, j := range jobs {
		order = append(order, j.Asset)
		if old, ok := s.entries[j.Asset]; ok && old.job.Spec == j.Spec {
			entries[j.Asset] = old
			continue
		}
		e := &entry{job: j, next: NextSlot(j.Schedule, now)}
		if l, ok := last[j.Asset]; ok {
			first := l.Slot
			if l.Served {
				first = NextSlot(j.Schedule, l.Slot)
			}
			if !first.IsZero() && !first.After(now) {
				e.next, e.catchUp = first, true
			}
		}
		entries[j.Asset] = e
	}
	s.entries, s.order = entries, order
}

// Due returns the runs to start at now and the slots to record as
// skipped. Every run returned marks its asset busy until Done.
func (s *Scheduler) Due(now time.Time) ([]Run, []Skip) {
	var runs []Run
	var skips []Skip
	for _, name := range s.order {
		e := s.entries[name]
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		slot, n, next := collapse(e.job.Schedule, e.next, now)
		catchUp := e.catchUp || n > 1
		e.next, e.catchUp = next, false
		if s.busy[name] {
			skips = append(skips, Skip{Asset: name, Slot: slot, Count: n})
			continue
		}
		s.busy[name] = true
		r := Run{Asset: name, Slot: slot, Trigger: TriggerSchedule}
		if catchUp {
			r.Trigger, r.Missed = TriggerCatchUp, n-1
		}
		runs = append(runs, r)
	}
	return runs, skips
}

// collapse walks from first (not after now) to the newest slot not after
// now: it returns that slot, how many slots it passed (at least 1), and
// the first slot after now.
func collapse(sched cron.Schedule, first, now time.Time) (time.Time, int, time.Time) {
	slot, n := first, 1
	for n < maxCollapse {
		next := NextSlot(sched, slot)
		if next.IsZero() || next.After(now) {
			return slot, n, next
		}
		slot, n = next, n+1
	}
	return now, n, NextSlot(sched, now)
}

// Done marks the asset's run finished, so its next slot may start one.
func (s *Scheduler) Done(asset string) { delete(s.busy, asset) }

// Next is the earliest upcoming slot of any asset: the time Due should be
// called again. It is zero when nothing is scheduled.
func (s *Scheduler) Next() time.Time {
	var first time.Time
	for _, e := range s.entries {
		if !e.next.IsZero() && (first.IsZero() || e.next.Before(first)) {
			first = e.next
		}
	}
	return first
}

// NextFor is the asset's next slot; zero when it has none.
func (s *Scheduler) NextFor(asset string) time.Time {
	if e, ok := s.entries[asset]; ok {
		return e.next
	}
	return time.Time{}
}
