package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func job(t *testing.T, asset, spec string) Job {
	t.Helper()
	s, err := policy.ParseSchedule(spec)
	if err != nil {
		t.Fatal(err)
	}
	return Job{Asset: asset, Spec: spec, Schedule: s}
}

func at(t *testing.T, zone, wall string) time.Time {
	t.Helper()
	loc, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", wall, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// started is a run as the simulated daemon started it.
type started struct {
	Run
	at, end time.Time
}

// simulate plays a daemon on a fake clock from from to to: it starts every
// run Due returns, each taking runFor, and finishes them (Done) when their
// time is up, waking only at the times Next and the runs ask for.
func simulate(s *Scheduler, from, to time.Time, runFor time.Duration) ([]started, []Skip) {
	var runs []started
	var skips []Skip
	doneAt := map[string]time.Time{}
	now := from
	for {
		for a, d := range doneAt {
			if !d.After(now) {
				s.Done(a)
				delete(doneAt, a)
			}
		}
		rs, sk := s.Due(now)
		skips = append(skips, sk...)
		for _, r := range rs {
			runs = append(runs, started{Run: r, at: now, end: now.Add(runFor)})
			doneAt[r.Asset] = now.Add(runFor)
		}
		next := s.Next()
		for _, d := range doneAt {
			if next.IsZero() || d.Before(next) {
				next = d
			}
		}
		if next.IsZero() || next.After(to) {
			return runs, skips
		}
		if !next.After(now) {
			panic(fmt.Sprintf("the clock does not move: next %v at %v", next, now))
		}
		now = next
	}
}

func localTimes(runs []started, loc *time.Location) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.at.In(loc).Format("2006-01-02 15:04 MST"))
	}
	return out
}

// TestDaylightSavingChanges: a job set inside the hour a clock change
// skips runs once, at the change; one set inside the hour it repeats runs
// once, at the first occurrence.
func TestDaylightSavingChanges(t *testing.T) {
	cases := []struct {
		name, zone, spec string
		from, to         string // wall times in zone
		want             []string
	}{
		{"oslo spring forward", "Europe/Oslo", "CRON_TZ=Europe/Oslo 30 2 * * *", "2024-03-29 12:00", "2024-04-02 00:00",
			[]string{"2024-03-30 02:30 CET", "2024-03-31 03:00 CEST", "2024-04-01 02:30 CEST"}},
		{"oslo fall back", "Europe/Oslo", "CRON_TZ=Europe/Oslo 30 2 * * *", "2024-10-25 12:00", "2024-10-29 00:00",
			[]string{"2024-10-26 02:30 CEST", "2024-10-27 02:30 CEST", "2024-10-28 02:30 CET"}},
		{"new york spring forward", "America/New_York", "CRON_TZ=America/New_York 30 2 * * *", "2024-03-09 00:00", "2024-03-12 00:00",
			[]string{"2024-03-09 02:30 EST", "2024-03-10 03:00 EDT", "2024-03-11 02:30 EDT"}},
		{"new york fall back", "America/New_York", "CRON_TZ=America/New_York 30 1 * * *", "2024-11-02 00:00", "2024-11-05 00:00",
			[]string{"2024-11-02 01:30 EDT", "2024-11-03 01:30 EDT", "2024-11-04 01:30 EST"}},
		{"every quarter hour inside the gap runs once", "Europe/Oslo", "CRON_TZ=Europe/Oslo */15 2 * * *", "2024-03-31 00:00", "2024-03-31 12:00",
			[]string{"2024-03-31 03:00 CEST"}},
		{"hourly across spring forward", "Europe/Oslo", "CRON_TZ=Europe/Oslo 0 * * * *", "2024-03-31 00:30", "2024-03-31 04:30",
			[]string{"2024-03-31 01:00 CET", "2024-03-31 03:00 CEST", "2024-03-31 04:00 CEST"}},
		{"hourly across fall back", "Europe/Oslo", "CRON_TZ=Europe/Oslo 0 * * * *", "2024-10-27 00:30", "2024-10-27 04:30",
			[]string{"2024-10-27 01:00 CEST", "2024-10-27 02:00 CEST", "2024-10-27 03:00 CET", "2024-10-27 04:00 CET"}},
		{"outside the changed hour nothing moves", "Europe/Oslo", "CRON_TZ=Europe/Oslo 0 4 * * *", "2024-03-30 12:00", "2024-04-01 12:00",
			[]string{"2024-03-31 04:00 CEST", "2024-04-01 04:00 CEST"}},
		{"singapore has no changes", "Asia/Singapore", "CRON_TZ=Asia/Singapore 30 3 * * *", "2024-03-30 12:00", "2024-04-01 12:00",
			[]string{"2024-03-31 03:30 +08", "2024-04-01 03:30 +08"}},
		{"weekly on sunday", "Asia/Singapore", "CRON_TZ=Asia/Singapore 0 1 * * 0", "2024-05-01 00:00", "2024-05-20 00:00",
			[]string{"2024-05-05 01:00 +08", "2024-05-12 01:00 +08", "2024-05-19 01:00 +08"}},
		{"weekly sunday job on the spring-forward night", "Europe/Oslo", "CRON_TZ=Europe/Oslo 30 2 * * 0", "2024-03-25 00:00", "2024-04-08 00:00",
			[]string{"2024-03-31 03:00 CEST", "2024-04-07 02:30 CEST"}},
		{"utc by default", "UTC", "0 2 * * *", "2024-03-30 12:00", "2024-04-01 12:00",
			[]string{"2024-03-31 02:00 UTC", "2024-04-01 02:00 UTC"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loc, _ := time.LoadLocation(tc.zone)
			s := New()
			from := at(t, tc.zone, tc.from)
			s.Load([]Job{job(t, "db", tc.spec)}, from, nil)
			runs, skips := simulate(s, from, at(t, tc.zone, tc.to), time.Minute)
			if got := localTimes(runs, loc); !slices.Equal(got, tc.want) {
				t.Fatalf("runs at\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
			if len(skips) != 0 {
				t.Fatalf("skipped %v", skips)
			}
			for _, r := range runs {
				if r.Trigger != TriggerSchedule {
					t.Fatalf("run at %v has trigger %s", r.at, r.Trigger)
				}
			}
		})
	}
}

// TestNextSlotLeavesIntervalsAlone: @every counts real time, so a clock
// change moves nothing.
func TestNextSlotLeavesIntervalsAlone(t *testing.T) {
	j := job(t, "db", "CRON_TZ=Europe/Oslo @every 30m")
	from := at(t, "Europe/Oslo", "2024-10-27 01:50")
	var got []time.Duration
	for s := from; len(got) < 6; {
		n := NextSlot(j.Schedule, s)
		got = append(got, n.Sub(s))
		s = n
	}
	for _, d := range got {
		if d != 30*time.Minute {
			t.Fatalf("intervals %v, want 30m each", got)
		}
	}
}

func TestNeverOverlaps(t *testing.T) {
	cases := []struct {
		name   string
		spec   string
		runFor time.Duration
	}{
		{"run shorter than the interval", "*/5 * * * *", 2 * time.Minute},
		{"run as long as the interval", "*/5 * * * *", 5 * time.Minute},
		{"run over two intervals", "*/5 * * * *", 12 * time.Minute},
		{"every second, slow run", "@every 1s", 3500 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			from := at(t, "UTC", "2024-06-01 00:00")
			to := from.Add(2 * time.Hour)
			s.Load([]Job{job(t, "a", tc.spec), job(t, "b", "*/7 * * * *")}, from, nil)
			runs, skips := simulate(s, from, to, tc.runFor)
			last := map[string]time.Time{}
			for _, r := range runs {
				if end, ok := last[r.Asset]; ok && r.at.Before(end) {
					t.Fatalf("%s started at %v while its run until %v was going", r.Asset, r.at, end)
				}
				last[r.Asset] = r.end
			}
			// Every slot is either run or skipped, none twice.
			for _, j := range []Job{job(t, "a", tc.spec), job(t, "b", "*/7 * * * *")} {
				slots := 0
				for s := from; ; slots++ {
					if s = NextSlot(j.Schedule, s); s.After(to) {
						break
					}
				}
				served := 0
				for _, r := range runs {
					if r.Asset == j.Asset {
						served++
					}
				}
				for _, sk := range skips {
					if sk.Asset == j.Asset {
						served += sk.Count
					}
				}
				if served != slots {
					t.Fatalf("%s: %d slots, %d run or skipped", j.Asset, slots, served)
				}
			}
			if tc.runFor > 5*time.Minute && len(skips) == 0 {
				t.Fatal("a run longer than the interval skipped nothing")
			}
		})
	}
}

func TestCatchUpOnceAfterDowntime(t *testing.T) {
	const zone = "Asia/Singapore"
	spec := "CRON_TZ=Asia/Singapore 30 3 * * *"
	cases := []struct {
		name       string
		last       string // wall time of the newest recorded slot; "" none
		unserved   bool   // that run was interrupted
		now        string
		wantRun    bool
		wantSlot   string
		wantMissed int
		wantNext   string
	}{
		{"four nights missed", "2024-05-01 03:30", false, "2024-05-05 10:00", true, "2024-05-05 03:30", 3, "2024-05-06 03:30"},
		{"one night missed", "2024-05-04 03:30", false, "2024-05-05 10:00", true, "2024-05-05 03:30", 0, "2024-05-06 03:30"},
		{"up to date", "2024-05-05 03:30", false, "2024-05-05 10:00", false, "", 0, "2024-05-06 03:30"},
		{"down before the slot, back after it", "2024-05-04 03:30", false, "2024-05-05 03:31", true, "2024-05-05 03:30", 0, "2024-05-06 03:30"},
		{"no record: wait for the next slot", "", false, "2024-05-05 10:00", false, "", 0, "2024-05-06 03:30"},
		{"tonight's run interrupted", "2024-05-05 03:30", true, "2024-05-05 10:00", true, "2024-05-05 03:30", 0, "2024-05-06 03:30"},
		{"an interrupted run two nights ago", "2024-05-04 03:30", true, "2024-05-05 10:00", true, "2024-05-05 03:30", 1, "2024-05-06 03:30"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			now := at(t, zone, tc.now)
			var last map[string]Last
			if tc.last != "" {
				last = map[string]Last{"dump": {Slot: at(t, zone, tc.last), Served: !tc.unserved}}
			}
			s.Load([]Job{job(t, "dump", spec)}, now, last)
			runs, skips := s.Due(now)
			if len(skips) != 0 {
				t.Fatalf("skips %v", skips)
			}
			if !tc.wantRun {
				if len(runs) != 0 {
					t.Fatalf("runs %+v, want none", runs)
				}
			} else {
				want := Run{Asset: "dump", Slot: at(t, zone, tc.wantSlot), Trigger: TriggerCatchUp, Missed: tc.wantMissed}
				if len(runs) != 1 || !runs[0].Slot.Equal(want.Slot) || runs[0].Trigger != want.Trigger || runs[0].Missed != want.Missed {
					t.Fatalf("runs %+v, want one %+v", runs, want)
				}
				s.Done("dump")
			}
			if again, _ := s.Due(now.Add(time.Minute)); len(again) != 0 {
				t.Fatalf("caught up twice: %+v", again)
			}
			if next := s.Next(); !next.Equal(at(t, zone, tc.wantNext)) {
				t.Fatalf("next slot %v, want %s", next, tc.wantNext)
			}
		})
	}
}

// TestStallRunsOnce: a host asleep across several slots makes them up with
// one run, and a busy asset reports the slots it skipped.
func TestStallRunsOnce(t *testing.T) {
	s := New()
	from := at(t, "UTC", "2024-06-01 00:00")
	s.Load([]Job{job(t, "a", "0 * * * *"), job(t, "b", "0 * * * *")}, from, nil)
	runs, _ := s.Due(from.Add(time.Hour))
	if len(runs) != 2 {
		t.Fatalf("runs %+v", runs)
	}
	s.Done("a") // b is still going
	wake := from.Add(4*time.Hour + 10*time.Minute)
	runs, skips := s.Due(wake)
	if len(runs) != 1 || runs[0].Asset != "a" || runs[0].Trigger != TriggerCatchUp || runs[0].Missed != 2 ||
		!runs[0].Slot.Equal(from.Add(4*time.Hour)) {
		t.Fatalf("runs %+v, want one catch-up of a for 04:00 covering 3 slots", runs)
	}
	if len(skips) != 1 || skips[0].Asset != "b" || skips[0].Count != 3 {
		t.Fatalf("skips %+v, want b's 3 slots", skips)
	}
	if next := s.Next(); !next.Equal(from.Add(5 * time.Hour)) {
		t.Fatalf("next %v", next)
	}
}

func TestReload(t *testing.T) {
	from := at(t, "UTC", "2024-06-01 00:00")
	s := New()
	s.Load([]Job{job(t, "keep", "0 3 * * *"), job(t, "change", "0 3 * * *"), job(t, "drop", "0 * * * *")}, from, nil)
	runs, _ := s.Due(from.Add(time.Hour)) // drop starts
	if len(runs) != 1 || runs[0].Asset != "drop" {
		t.Fatalf("runs %+v", runs)
	}
	now := from.Add(90 * time.Minute)
	// A reload with a catalog record must not catch up: that is for start.
	s.Load([]Job{job(t, "keep", "0 3 * * *"), job(t, "change", "0 4 * * *"), job(t, "new", "30 * * * *")}, now, nil)
	for asset, want := range map[string]time.Time{
		"keep": from.Add(3 * time.Hour), "change": from.Add(4 * time.Hour), "new": from.Add(150 * time.Minute), "drop": {},
	} {
		if got := s.NextFor(asset); !got.Equal(want) {
			t.Errorf("%s: next %v, want %v", asset, got, want)
		}
	}
	// The dropped asset's run is still going: put back, it must not overlap.
	s.Load([]Job{job(t, "drop", "0 * * * *")}, now, nil)
	if _, skips := s.Due(from.Add(2 * time.Hour)); len(skips) != 1 || skips[0].Asset != "drop" {
		t.Fatalf("a run going across reloads was overlapped: skips %+v", skips)
	}
	s.Done("drop")
	if runs, _ := s.Due(from.Add(3 * time.Hour)); len(runs) != 1 {
		t.Fatalf("runs after Done: %+v", runs)
	}
}

func TestNothingScheduled(t *testing.T) {
	s := New()
	s.Load(nil, time.Now(), nil)
	if !s.Next().IsZero() {
		t.Fatal("Next of an empty scheduler is not zero")
	}
	// A schedule that never fires (30 February) is never due.
	s.Load([]Job{job(t, "x", "0 0 30 2 *")}, time.Now(), nil)
	if !s.Next().IsZero() {
		t.Fatalf("next %v for 30 February", s.Next())
	}
}
