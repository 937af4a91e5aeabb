package retention

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests need real zones on machines without /usr/share/zoneinfo
)

const (
	day      = 24 * time.Hour
	labelFmt = "2006-01-02 15:04"
)

func loadLocation(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		tb.Fatalf("load location %s: %v", name, err)
	}
	return loc
}

// wall parses "yyyy-mm-dd hh:mm" as wall-clock time in loc.
func wall(tb testing.TB, loc *time.Location, s string) time.Time {
	tb.Helper()
	t, err := time.ParseInLocation(labelFmt, s, loc)
	if err != nil {
		tb.Fatalf("parse %q: %v", s, err)
	}
	return t
}

// at lists the labels of the snapshots taken at hhmm on each date.
func at(hhmm string, dates ...string) []string {
	out := make([]string, len(dates))
	for i, d := range dates {
		out[i] = d + " " + hhmm
	}
	return out
}

// span lists the labels of the snapshots taken at hhmm on every date from
// first to last inclusive.
func span(tb testing.TB, first, last, hhmm string) []string {
	tb.Helper()
	from, err := time.Parse("2006-01-02", first)
	if err != nil {
		tb.Fatal(err)
	}
	to, err := time.Parse("2006-01-02", last)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		out = append(out, d.Format("2006-01-02")+" "+hhmm)
	}
	return out
}

// calendar builds two years of backups in Singapore: one at 03:00 every day
// from 2024-11-21 to 2026-11-20, a second at 21:00 on the 1st and 15th of
// every month, and none during ISO week 2026-W45 (2026-11-02 to 2026-11-08).
// IDs run against time and the slice is shuffled, so only End can order it.
// It returns the snapshots and each ID's "yyyy-mm-dd hh:mm" label.
func calendar(tb testing.TB, sgt *time.Location) ([]Snapshot, map[string]string) {
	tb.Helper()
	gapFrom := time.Date(2026, 11, 2, 0, 0, 0, 0, sgt)
	gapTo := time.Date(2026, 11, 9, 0, 0, 0, 0, sgt)
	var snaps []Snapshot
	labels := make(map[string]string)
	add := func(end time.Time) {
		id := fmt.Sprintf("snap-%04d", 9999-len(snaps))
		snaps = append(snaps, Snapshot{ID: id, End: end, Timeline: 1})
		labels[id] = end.In(sgt).Format(labelFmt)
	}
	first := time.Date(2024, 11, 21, 0, 0, 0, 0, sgt)
	for i := range 730 {
		d := first.AddDate(0, 0, i)
		if !d.Before(gapFrom) && d.Before(gapTo) {
			continue
		}
		add(d.Add(3 * time.Hour))
		if d.Day() == 1 || d.Day() == 15 {
			add(d.Add(21 * time.Hour))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })
	return snaps, labels
}

// TestCalendarPolicies is the acceptance test: the seed policies over two
// years of daily backups, with the surviving set enumerated by hand.
func TestCalendarPolicies(t *testing.T) {
	sgt := loadLocation(t, "Asia/Singapore")
	snaps, labels := calendar(t, sgt)
	// 730 days - 7 without backups + 48 extras (2 in 2024, 24 in 2025, 22 in 2026).
	if len(snaps) != 771 {
		t.Fatalf("calendar has %d snapshots, want 771", len(snaps))
	}
	now := wall(t, sgt, "2026-11-20 12:00")
	const floor = 7 * day
	sg := func(s string) time.Time { return wall(t, sgt, s) }

	// Policy (a), weekly 12 walks back over the empty W45: newest of each
	// week W47, W46, W44 .. W35. Daily 30: 11-09..11-20 (12 days), 11-01,
	// then 10-15..10-31 (17 days); the gap week uses no slot.
	weeklyA := at("03:00", "2026-08-30", "2026-09-06", "2026-09-13", "2026-09-20",
		"2026-09-27", "2026-10-04", "2026-10-11")
	keptA := slices.Concat(
		weeklyA,
		span(t, "2026-10-16", "2026-10-31", "03:00"),
		span(t, "2026-11-09", "2026-11-20", "03:00"), // includes 11-15 03:00, inside the window
		at("21:00", "2026-10-15", "2026-11-01", "2026-11-15"),
	)
	// Policy (b) adds W34 and one snapshot per month back to 2025-12.
	keptB := slices.Concat(keptA, at("03:00", "2026-08-23",
		"2026-09-30", "2026-08-31", "2026-07-31", "2026-06-30", "2026-05-31",
		"2026-04-30", "2026-03-31", "2026-02-28", "2026-01-31", "2025-12-31"))
	// Policy (c): everything from now-90d = 2026-08-22 12:00 on.
	keptC := slices.Concat(
		span(t, "2026-08-23", "2026-11-01", "03:00"),
		span(t, "2026-11-09", "2026-11-20", "03:00"),
		at("21:00", "2026-09-01", "2026-09-15", "2026-10-01", "2026-10-15", "2026-11-01", "2026-11-15"),
	)
	// Policy (d) covers Yearly: 5 asked, only 3 calendar years exist.
	keptD := slices.Concat(
		at("03:00", "2024-12-31", "2025-12-31", "2026-09-30", "2026-10-31"),
		span(t, "2026-11-14", "2026-11-20", "03:00"),
		at("21:00", "2026-11-15"),
	)

	type check struct {
		reasons []string
		until   time.Time
	}
	tests := []struct {
		name     string
		rules    Rules
		kept     []string
		checks   map[string]check
		pitrBase string // label
	}{
		{
			name:  "a pitr 7d daily 30 weekly 12",
			rules: Rules{PITRWindow: 7 * day, Daily: 30, Weekly: 12, Floor: floor, Location: sgt},
			kept:  keptA,
			checks: map[string]check{
				"2026-11-20 03:00": {[]string{"within pitr window", "floor 7d", "daily 2026-11-20", "weekly 2026-W47", "newest"}, time.Time{}},
				"2026-11-15 21:00": {[]string{"within pitr window", "floor 7d", "daily 2026-11-15", "weekly 2026-W46"}, sg("2027-02-07 21:00")},
				"2026-11-15 03:00": {[]string{"within pitr window", "floor 7d"}, sg("2026-11-22 03:00")},
				"2026-11-14 03:00": {[]string{"within pitr window", "floor 7d", "daily 2026-11-14"}, sg("2026-12-14 03:00")},
				// Base until 11-14 03:00 leaves the window (11-21), daily until 12-13.
				"2026-11-13 03:00": {[]string{"pitr window base", "daily 2026-11-13"}, sg("2026-12-13 03:00")},
				"2026-11-01 21:00": {[]string{"daily 2026-11-01", "weekly 2026-W44"}, sg("2027-01-24 21:00")},
				"2026-11-01 03:00": {[]string{"no rule keeps it"}, time.Time{}},
				"2026-10-15 21:00": {[]string{"daily 2026-10-15"}, sg("2026-11-14 21:00")},
				"2026-10-15 03:00": {[]string{"no rule keeps it"}, time.Time{}},
				"2026-08-30 03:00": {[]string{"weekly 2026-W35"}, sg("2026-11-22 03:00")},
				"2026-08-29 03:00": {[]string{"no rule keeps it"}, time.Time{}},
				"2024-11-21 03:00": {[]string{"no rule keeps it"}, time.Time{}},
			},
			pitrBase: "2026-11-13 03:00",
		},
		{
			name:  "b daily 30 weekly 13 monthly 12",
			rules: Rules{Daily: 30, Weekly: 13, Monthly: 12, Floor: floor, Location: sgt},
			kept:  keptB,
			checks: map[string]check{
				"2026-11-20 03:00": {[]string{"floor 7d", "daily 2026-11-20", "weekly 2026-W47", "monthly 2026-11", "newest"}, time.Time{}},
				"2026-11-15 03:00": {[]string{"floor 7d"}, sg("2026-11-22 03:00")},
				"2026-11-13 03:00": {[]string{"daily 2026-11-13"}, sg("2026-12-13 03:00")},
				"2026-10-31 03:00": {[]string{"daily 2026-10-31", "monthly 2026-10"}, sg("2027-10-31 03:00")},
				"2026-08-23 03:00": {[]string{"weekly 2026-W34"}, sg("2026-11-22 03:00")},
				"2026-02-28 03:00": {[]string{"monthly 2026-02"}, sg("2027-02-28 03:00")},
				"2025-12-31 03:00": {[]string{"monthly 2025-12"}, sg("2026-12-31 03:00")},
				"2025-11-30 03:00": {[]string{"no rule keeps it"}, time.Time{}},
			},
		},
		{
			name:  "c keep_within 90d",
			rules: Rules{KeepWithin: 90 * day, Floor: floor, Location: sgt},
			kept:  keptC,
			checks: map[string]check{
				"2026-11-20 03:00": {[]string{"keep_within 90d", "floor 7d", "newest"}, time.Time{}},
				"2026-11-14 03:00": {[]string{"keep_within 90d", "floor 7d"}, sg("2027-02-12 03:00")},
				"2026-11-13 03:00": {[]string{"keep_within 90d"}, sg("2027-02-11 03:00")},
				"2026-08-23 03:00": {[]string{"keep_within 90d"}, sg("2026-11-21 03:00")},
				"2026-08-22 03:00": {[]string{"no rule keeps it"}, time.Time{}},
			},
		},
		{
			name:  "d monthly 3 yearly 5",
			rules: Rules{Monthly: 3, Yearly: 5, Floor: floor, Location: sgt},
			kept:  keptD,
			checks: map[string]check{
				"2026-11-20 03:00": {[]string{"floor 7d", "monthly 2026-11", "yearly 2026", "newest"}, time.Time{}},
				"2026-09-30 03:00": {[]string{"monthly 2026-09"}, sg("2026-12-30 03:00")},
				"2025-12-31 03:00": {[]string{"yearly 2025"}, sg("2030-12-31 03:00")},
				"2024-12-31 03:00": {[]string{"yearly 2024"}, sg("2029-12-31 03:00")},
				"2024-12-30 03:00": {[]string{"no rule keeps it"}, time.Time{}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := Decide(snaps, tt.rules, now)
			checkOrdered(t, plan, len(snaps))

			want := make(map[string]bool)
			for _, l := range tt.kept {
				if want[l] {
					t.Fatalf("expected set lists %s twice", l)
				}
				want[l] = true
			}
			byLabel := make(map[string]Decision)
			var missing, extra []string
			for _, d := range plan.Decisions {
				l := labels[d.Snapshot.ID]
				byLabel[l] = d
				switch {
				case d.Keep && !want[l]:
					extra = append(extra, l+" "+strings.Join(d.Reasons, ", "))
				case !d.Keep && want[l]:
					missing = append(missing, l)
				}
			}
			for l := range want {
				if _, ok := byLabel[l]; !ok {
					t.Errorf("expected set names %s, which the calendar lacks", l)
				}
			}
			slices.Sort(missing)
			slices.Sort(extra)
			if len(missing) > 0 || len(extra) > 0 {
				t.Errorf("deleted but expected kept: %q\nkept but expected deleted: %q", missing, extra)
			}

			for l, c := range tt.checks {
				d, ok := byLabel[l]
				if !ok {
					t.Errorf("%s: no such snapshot", l)
					continue
				}
				if !slices.Equal(d.Reasons, c.reasons) {
					t.Errorf("%s: reasons %q, want %q", l, d.Reasons, c.reasons)
				}
				if !d.KeepUntil.Equal(c.until) {
					t.Errorf("%s: KeepUntil %v, want %v", l, d.KeepUntil.In(sgt), c.until)
				}
			}

			if tt.pitrBase == "" {
				if plan.PITRBase != "" || !plan.PITRFrom.IsZero() {
					t.Errorf("PITR base %q from %v, want none", plan.PITRBase, plan.PITRFrom)
				}
			} else {
				if labels[plan.PITRBase] != tt.pitrBase {
					t.Errorf("PITR base %s, want %s", labels[plan.PITRBase], tt.pitrBase)
				}
				if !plan.PITRFrom.Equal(sg(tt.pitrBase)) {
					t.Errorf("PITRFrom %v, want %s", plan.PITRFrom.In(sgt), tt.pitrBase)
				}
			}
		})
	}
}

// checkOrdered asserts one decision per snapshot, oldest first, with
// consistent Keep, Reasons and KeepUntil.
func checkOrdered(tb testing.TB, plan Plan, n int) {
	tb.Helper()
	if len(plan.Decisions) != n {
		tb.Fatalf("%d decisions for %d snapshots", len(plan.Decisions), n)
	}
	for i, d := range plan.Decisions {
		if i > 0 && compareSnapshots(plan.Decisions[i-1].Snapshot, d.Snapshot) > 0 {
			tb.Errorf("decision %d (%s) is out of order", i, d.Snapshot.ID)
		}
		if len(d.Reasons) == 0 {
			tb.Errorf("%s: no reasons", d.Snapshot.ID)
		}
		if !d.Keep && (!slices.Equal(d.Reasons, []string{"no rule keeps it"}) || !d.KeepUntil.IsZero()) {
			tb.Errorf("%s: deleted with reasons %q and KeepUntil %v", d.Snapshot.ID, d.Reasons, d.KeepUntil)
		}
	}
}

func TestDecide(t *testing.T) {
	sgt := loadLocation(t, "Asia/Singapore")
	oslo := loadLocation(t, "Europe/Oslo")
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	utc := func(s string) time.Time { return wall(t, time.UTC, s) }
	s := func(id string, end time.Time) Snapshot { return Snapshot{ID: id, End: end} }
	del := []string{"no rule keeps it"}

	tests := []struct {
		name  string
		snaps []Snapshot
		rules Rules
		now   time.Time
		want  map[string][]string  // every ID's reasons
		until map[string]time.Time // KeepUntil of the IDs listed
		order []string             // IDs, oldest first, when checked
		base  string               // PITRBase
		from  time.Time            // PITRFrom
	}{
		{
			name:  "empty input",
			rules: Rules{PITRWindow: day, Daily: 7},
			now:   now,
			want:  map[string][]string{},
		},
		{
			name: "empty input without rules",
			now:  now,
			want: map[string][]string{},
		},
		{
			name: "no rules keep everything, even with a floor",
			snaps: []Snapshot{
				s("old", now.Add(-1000*day)),
				{ID: "held", End: now.Add(-500 * day), Pinned: true, PinReason: "hold"},
				s("future", now.Add(time.Hour)),
			},
			rules: Rules{Floor: 7 * day, Location: sgt},
			now:   now,
			want: map[string][]string{
				"old":    {"no retention rules"},
				"held":   {"no retention rules", "pinned: hold"},
				"future": {"no retention rules"},
			},
			until: map[string]time.Time{"old": {}, "held": {}, "future": {}},
		},
		{
			name: "order by End, not ID; ties by Timeline, then ID",
			snaps: []Snapshot{
				{ID: "a", End: utc("2026-11-20 06:00"), Timeline: 1},
				{ID: "c", End: utc("2026-11-20 06:00"), Timeline: 1},
				{ID: "y", End: utc("2026-11-19 06:00"), Timeline: 2},
				{ID: "z", End: utc("2026-11-18 06:00")},
				{ID: "b", End: utc("2026-11-20 06:00"), Timeline: 1},
				{ID: "w", End: utc("2026-11-19 06:00"), Timeline: 1},
			},
			rules: Rules{Daily: 2},
			now:   now,
			want: map[string][]string{
				"z": del, "w": del, "a": del, "b": del,
				"y": {"daily 2026-11-19"},
				"c": {"daily 2026-11-20", "newest"},
			},
			order: []string{"z", "w", "y", "a", "b", "c"},
		},
		{
			name: "pitr base follows the same tie order",
			snaps: []Snapshot{
				{ID: "y", End: utc("2026-11-19 06:00"), Timeline: 1},
				{ID: "x", End: utc("2026-11-19 06:00"), Timeline: 2},
				{ID: "z", End: utc("2026-11-19 06:00"), Timeline: 1},
				s("in", utc("2026-11-20 06:00")),
			},
			rules: Rules{PITRWindow: 6 * time.Hour}, // window starts 06:00 on the 20th
			now:   now,
			want: map[string][]string{
				"y": del, "z": del,
				"x":  {"pitr window base"},
				"in": {"within pitr window", "newest"},
			},
			until: map[string]time.Time{"x": utc("2026-11-20 12:00"), "in": {}},
			order: []string{"y", "z", "x", "in"},
			base:  "x",
			from:  utc("2026-11-19 06:00"),
		},
		{
			name: "pitr base is the newest snapshot before the window",
			snaps: []Snapshot{
				s("d10", now.Add(-10*day)),
				s("d8", now.Add(-8*day)),
				s("d6", now.Add(-6*day)),
				s("d3", now.Add(-3*day)),
				s("d1", now.Add(-1*day)),
			},
			rules: Rules{PITRWindow: 5 * day},
			now:   now,
			want: map[string][]string{
				"d10": del, "d8": del,
				"d6": {"pitr window base"},
				"d3": {"within pitr window"},
				"d1": {"within pitr window", "newest"},
			},
			// d6 is needed until d3 leaves the window.
			until: map[string]time.Time{"d6": now.Add(2 * day), "d3": now.Add(2 * day), "d1": {}},
			base:  "d6",
			from:  now.Add(-6 * day),
		},
		{
			name: "a snapshot exactly at the window start is inside it",
			snaps: []Snapshot{
				s("before", now.Add(-6*day)),
				s("edge", now.Add(-5*day)),
				s("last", now.Add(-day)),
			},
			rules: Rules{PITRWindow: 5 * day},
			now:   now,
			want: map[string][]string{
				"before": {"pitr window base"},
				"edge":   {"within pitr window"},
				"last":   {"within pitr window", "newest"},
			},
			until: map[string]time.Time{"before": now, "edge": now},
			base:  "before",
			from:  now.Add(-6 * day),
		},
		{
			name: "all snapshots inside the window: the oldest is the base",
			snaps: []Snapshot{
				s("d1", now.Add(-1*day)),
				s("d3", now.Add(-3*day)),
				s("d2", now.Add(-2*day)),
			},
			rules: Rules{PITRWindow: 7 * day},
			now:   now,
			want: map[string][]string{
				"d3": {"within pitr window", "pitr window base"},
				"d2": {"within pitr window"},
				"d1": {"within pitr window", "newest"},
			},
			// d3 as a window member until now+4d, as the base until d2 leaves: now+5d.
			until: map[string]time.Time{"d3": now.Add(5 * day), "d2": now.Add(5 * day), "d1": {}},
			base:  "d3",
			from:  now.Add(-3 * day),
		},
		{
			name:  "all snapshots older than the window: the newest is the base",
			snaps: []Snapshot{s("d30", now.Add(-30*day)), s("d20", now.Add(-20*day))},
			rules: Rules{PITRWindow: 7 * day},
			now:   now,
			want: map[string][]string{
				"d30": del,
				"d20": {"pitr window base", "newest"},
			},
			until: map[string]time.Time{"d20": {}},
			base:  "d20",
			from:  now.Add(-20 * day),
		},
		{
			name:  "single snapshot inside the window",
			snaps: []Snapshot{s("only", now.Add(-time.Hour))},
			rules: Rules{PITRWindow: 7 * day},
			now:   now,
			want:  map[string][]string{"only": {"within pitr window", "pitr window base", "newest"}},
			until: map[string]time.Time{"only": {}},
			base:  "only",
			from:  now.Add(-time.Hour),
		},
		{
			name: "keep_within and floor include their start",
			snaps: []Snapshot{
				s("out", now.Add(-5*day-time.Second)),
				s("within-edge", now.Add(-5*day)),
				s("floor-edge", now.Add(-2*day)),
				s("last", now.Add(-day)),
			},
			rules: Rules{KeepWithin: 5 * day, Floor: 2 * day},
			now:   now,
			want: map[string][]string{
				"out":         del,
				"within-edge": {"keep_within 5d"},
				"floor-edge":  {"keep_within 5d", "floor 2d"},
				"last":        {"keep_within 5d", "floor 2d", "newest"},
			},
			until: map[string]time.Time{"within-edge": now, "floor-edge": now.Add(3 * day)},
		},
		{
			name:  "newest kept when every rule drops it",
			snaps: []Snapshot{s("d3", now.Add(-3*day)), s("d2", now.Add(-2*day))},
			rules: Rules{KeepWithin: time.Hour, Floor: time.Hour},
			now:   now,
			want:  map[string][]string{"d3": del, "d2": {"newest"}},
			until: map[string]time.Time{"d2": {}},
		},
		{
			name: "pinned kept with its reason, indefinitely",
			snaps: []Snapshot{
				{ID: "case17", End: now.Add(-400 * day), Pinned: true, PinReason: "legal hold: case 17"},
				{ID: "bare", End: now.Add(-300 * day), Pinned: true},
				s("old", now.Add(-50*day)),
				{ID: "audit", End: now.Add(-2 * day), Pinned: true, PinReason: "audit"},
				s("new", now.Add(-day)),
			},
			rules: Rules{KeepWithin: 10 * day},
			now:   now,
			want: map[string][]string{
				"case17": {"pinned: legal hold: case 17"},
				"bare":   {"pinned"},
				"old":    del,
				"audit":  {"keep_within 10d", "pinned: audit"},
				"new":    {"keep_within 10d", "newest"},
			},
			until: map[string]time.Time{"case17": {}, "bare": {}, "audit": {}, "new": {}, "old": {}},
		},
		{
			name: "future snapshots are kept",
			snaps: []Snapshot{
				s("past", utc("2026-11-20 08:00")),
				s("f1", utc("2026-11-20 13:00")),
				s("f2", utc("2026-11-20 14:00")),
			},
			rules: Rules{Daily: 1},
			now:   now,
			want: map[string][]string{
				"past": del,
				"f1":   {"future"},
				"f2":   {"daily 2026-11-20", "newest", "future"},
			},
			until: map[string]time.Time{"f1": utc("2026-11-20 13:00")},
		},
		{
			name:  "future snapshots count as within every window",
			snaps: []Snapshot{s("old", now.Add(-10*day)), s("f", now.Add(time.Hour)), s("newer", now.Add(2*time.Hour))},
			rules: Rules{PITRWindow: day, KeepWithin: 36 * time.Hour, Floor: 90 * time.Minute},
			now:   now,
			want: map[string][]string{
				"old":   {"pitr window base"},
				"f":     {"within pitr window", "keep_within 36h", "floor 1h30m", "future"},
				"newer": {"within pitr window", "keep_within 36h", "floor 1h30m", "newest", "future"},
			},
			until: map[string]time.Time{"old": now.Add(day + time.Hour), "f": now.Add(37 * time.Hour)},
			base:  "old",
			from:  now.Add(-10 * day),
		},
		{
			name: "days without backups do not use a daily slot",
			snaps: []Snapshot{
				s("d1", utc("2026-11-01 10:00")),
				s("d5", utc("2026-11-05 10:00")),
				s("d20a", utc("2026-11-20 01:00")),
				s("d20b", utc("2026-11-20 02:00")),
			},
			rules: Rules{Daily: 3},
			now:   now,
			want: map[string][]string{
				"d1":   {"daily 2026-11-01"},
				"d5":   {"daily 2026-11-05"},
				"d20a": del,
				"d20b": {"daily 2026-11-20", "newest"},
			},
		},
		{
			// 23:30 UTC on the 19th is 07:30 on the 20th in Singapore.
			name: "day buckets follow Location",
			snaps: []Snapshot{
				s("prev", utc("2026-11-18 12:00")),
				s("late", utc("2026-11-19 23:30")),
				s("morning", utc("2026-11-20 01:00")),
			},
			rules: Rules{Daily: 2, Location: sgt},
			now:   now,
			want: map[string][]string{
				"prev":    {"daily 2026-11-18"},
				"late":    del,
				"morning": {"daily 2026-11-20", "newest"},
			},
			until: map[string]time.Time{"prev": wall(t, sgt, "2026-11-20 20:00")},
		},
		{
			name: "nil Location is UTC",
			snaps: []Snapshot{
				s("prev", utc("2026-11-18 12:00")),
				s("late", utc("2026-11-19 23:30")),
				s("morning", utc("2026-11-20 01:00")),
			},
			rules: Rules{Daily: 2},
			now:   now,
			want: map[string][]string{
				"prev":    del,
				"late":    {"daily 2026-11-19"},
				"morning": {"daily 2026-11-20", "newest"},
			},
		},
		{
			// Oslo falls back from 03:00 CEST to 02:00 CET on 2026-10-25: a
			// 25-hour day with 02:30 twice. Cutting days every 24h from UTC
			// midnight would put 00:30 local with the day before.
			name: "daylight saving end in Oslo neither splits nor merges days",
			snaps: []Snapshot{
				s("24-2330", utc("2026-10-24 21:30")),
				s("25-0030", utc("2026-10-24 22:30")),
				s("25-0230-cest", utc("2026-10-25 00:30")),
				s("25-0230-cet", utc("2026-10-25 01:30")),
				s("25-2330", utc("2026-10-25 22:30")),
				s("26-0030", utc("2026-10-25 23:30")),
			},
			rules: Rules{Daily: 3, Location: oslo},
			now:   now,
			want: map[string][]string{
				"24-2330":      {"daily 2026-10-24"},
				"25-0030":      del,
				"25-0230-cest": del,
				"25-0230-cet":  del,
				"25-2330":      {"daily 2026-10-25"},
				"26-0030":      {"daily 2026-10-26", "newest"},
			},
		},
		{
			// Oslo springs forward from 02:00 CET to 03:00 CEST on 2026-03-29.
			name: "daylight saving start in Oslo neither splits nor merges days",
			snaps: []Snapshot{
				s("28-2330", utc("2026-03-28 22:30")),
				s("29-0030", utc("2026-03-28 23:30")),
				s("29-0330", utc("2026-03-29 01:30")),
				s("29-2330", utc("2026-03-29 21:30")),
				s("30-0030", utc("2026-03-29 22:30")),
			},
			rules: Rules{Daily: 3, Location: oslo},
			now:   now,
			want: map[string][]string{
				"28-2330": {"daily 2026-03-28"},
				"29-0030": del,
				"29-0330": del,
				"29-2330": {"daily 2026-03-29"},
				"30-0030": {"daily 2026-03-30", "newest"},
			},
		},
		{
			// 2024-12-30 is Monday of ISO week 2025-W01 but in calendar year 2024.
			name: "weeks are ISO weeks, years are calendar years",
			snaps: []Snapshot{
				s("sat", utc("2024-12-28 12:00")),
				s("sun", utc("2024-12-29 12:00")),
				s("mon", utc("2024-12-30 12:00")),
				s("wed", utc("2025-01-01 12:00")),
			},
			rules: Rules{Weekly: 2, Monthly: 2, Yearly: 2},
			now:   now,
			want: map[string][]string{
				"sat": del,
				"sun": {"weekly 2024-W52"},
				"mon": {"monthly 2024-12", "yearly 2024"},
				"wed": {"weekly 2025-W01", "monthly 2025-01", "yearly 2025", "newest"},
			},
			until: map[string]time.Time{
				"sun": utc("2025-01-12 12:00"),
				"mon": utc("2026-12-30 12:00"),
			},
		},
		{
			name: "KeepUntil is the latest of the reasons",
			snaps: []Snapshot{
				s("sun", utc("2026-11-15 12:00")), // ISO week 2026-W46
				s("mon", utc("2026-11-16 06:00")),
			},
			rules: Rules{KeepWithin: 10 * day, Daily: 2, Weekly: 4},
			now:   utc("2026-11-16 12:00"),
			want: map[string][]string{
				"sun": {"keep_within 10d", "daily 2026-11-15", "weekly 2026-W46"},
				"mon": {"keep_within 10d", "daily 2026-11-16", "weekly 2026-W47", "newest"},
			},
			until: map[string]time.Time{"sun": utc("2026-12-13 12:00"), "mon": {}},
		},
		{
			name:  "KeepUntil monthly uses AddDate",
			snaps: []Snapshot{s("nov30", utc("2025-11-30 12:00")), s("jan", utc("2026-01-15 12:00"))},
			rules: Rules{Monthly: 3},
			now:   now,
			want: map[string][]string{
				"nov30": {"monthly 2025-11"},
				"jan":   {"monthly 2026-01", "newest"},
			},
			// 2026-02-30 normalizes to 2026-03-02.
			until: map[string]time.Time{"nov30": utc("2026-03-02 12:00")},
		},
		{
			name:  "KeepUntil yearly from a leap day",
			snaps: []Snapshot{s("leap", utc("2024-02-29 12:00")), s("next", utc("2025-06-01 12:00"))},
			rules: Rules{Yearly: 2},
			now:   now,
			want: map[string][]string{
				"leap": {"yearly 2024"},
				"next": {"yearly 2025", "newest"},
			},
			until: map[string]time.Time{"leap": utc("2026-03-01 12:00")},
		},
		{
			// Ten calendar days over the DST end are 241 hours.
			name: "KeepUntil daily counts calendar days in Location",
			snaps: []Snapshot{
				s("a", wall(t, oslo, "2026-10-20 03:00")),
				s("b", wall(t, oslo, "2026-10-21 03:00")),
			},
			rules: Rules{Daily: 10, Location: oslo},
			now:   now,
			want: map[string][]string{
				"a": {"daily 2026-10-20"},
				"b": {"daily 2026-10-21", "newest"},
			},
			until: map[string]time.Time{"a": wall(t, oslo, "2026-10-30 03:00")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := slices.Clone(tt.snaps)
			plan := Decide(tt.snaps, tt.rules, tt.now)
			if !slices.Equal(input, tt.snaps) {
				t.Errorf("Decide reordered or changed its input")
			}
			checkOrdered(t, plan, len(tt.snaps))
			if len(tt.want) != len(tt.snaps) {
				t.Fatalf("test case lists %d of %d snapshots", len(tt.want), len(tt.snaps))
			}
			var order []string
			for _, d := range plan.Decisions {
				id := d.Snapshot.ID
				order = append(order, id)
				want, ok := tt.want[id]
				if !ok {
					t.Errorf("unexpected decision for %s", id)
					continue
				}
				if !slices.Equal(d.Reasons, want) {
					t.Errorf("%s: reasons %q, want %q", id, d.Reasons, want)
				}
				if keep := !slices.Equal(want, del); d.Keep != keep {
					t.Errorf("%s: Keep %v, want %v", id, d.Keep, keep)
				}
				if u, ok := tt.until[id]; ok && !d.KeepUntil.Equal(u) {
					t.Errorf("%s: KeepUntil %v, want %v", id, d.KeepUntil, u)
				}
			}
			if tt.order != nil && !slices.Equal(order, tt.order) {
				t.Errorf("order %q, want %q", order, tt.order)
			}
			if plan.PITRBase != tt.base || !plan.PITRFrom.Equal(tt.from) {
				t.Errorf("PITR base %q from %v, want %q from %v", plan.PITRBase, plan.PITRFrom, tt.base, tt.from)
			}
		})
	}
}

func TestRulesIsZero(t *testing.T) {
	tests := []struct {
		name  string
		rules Rules
		want  bool
	}{
		{"zero value", Rules{}, true},
		{"location only", Rules{Location: time.Local}, true},
		{"floor only protects, it is no rule", Rules{Floor: 7 * day}, true},
		{"non-positive values are off", Rules{PITRWindow: -time.Hour, KeepWithin: -1, Daily: -1, Weekly: -2, Monthly: -3, Yearly: -4}, true},
		{"pitr window", Rules{PITRWindow: time.Hour}, false},
		{"keep within", Rules{KeepWithin: time.Hour}, false},
		{"daily", Rules{Daily: 1}, false},
		{"weekly", Rules{Weekly: 1}, false},
		{"monthly", Rules{Monthly: 1}, false},
		{"yearly", Rules{Yearly: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.IsZero(); got != tt.want {
				t.Errorf("IsZero() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{7 * day, "7d"},
		{90 * day, "90d"},
		{36 * time.Hour, "36h"},
		{90 * time.Minute, "1h30m"},
		{45 * time.Second, "45s"},
	}
	for _, tt := range tests {
		if got := formatDuration(tt.d); got != tt.want {
			t.Errorf("formatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// FuzzDecide checks the promises that hold for any input: nothing below
// the floor, in the PITR window, pinned or newest is deleted, GFS counts are
// respected, and the plan does not depend on the input order.
func FuzzDecide(f *testing.F) {
	f.Add(uint64(1), uint8(40), uint16(7*24), uint16(0), uint16(7*24), uint8(7), uint8(4), uint8(3), uint8(1))
	f.Add(uint64(2), uint8(200), uint16(0), uint16(90*24), uint16(24), uint8(0), uint8(0), uint8(0), uint8(0))
	f.Add(uint64(3), uint8(5), uint16(0), uint16(0), uint16(0), uint8(0), uint8(0), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8, pitrH, withinH, floorH uint16, daily, weekly, monthly, yearly uint8) {
		oslo := loadLocation(t, "Europe/Oslo")
		now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
		rng := rand.New(rand.NewPCG(seed, 7))
		snaps := make([]Snapshot, n)
		for i := range snaps {
			// Three years back to a day ahead, on a coarse grid so ties happen.
			end := now.Add(-time.Duration(rng.IntN(3*365*24+24)-24) * time.Hour)
			// IDs are unique, as in a repository, but not in time order.
			snaps[i] = Snapshot{ID: fmt.Sprintf("%02d-%d", rng.IntN(50), i), End: end, Timeline: uint32(rng.IntN(3)), Pinned: rng.IntN(20) == 0}
		}
		rules := Rules{
			PITRWindow: time.Duration(pitrH) * time.Hour,
			KeepWithin: time.Duration(withinH) * time.Hour,
			Floor:      time.Duration(floorH) * time.Hour,
			Daily:      int(daily), Weekly: int(weekly), Monthly: int(monthly), Yearly: int(yearly),
			Location: oslo,
		}
		plan := Decide(snaps, rules, now)
		checkOrdered(t, plan, len(snaps))

		reversed := slices.Clone(snaps)
		slices.Reverse(reversed)
		again := Decide(reversed, rules, now)
		for i := range plan.Decisions {
			a, b := plan.Decisions[i], again.Decisions[i]
			if a.Snapshot != b.Snapshot || a.Keep != b.Keep || !slices.Equal(a.Reasons, b.Reasons) || !a.KeepUntil.Equal(b.KeepUntil) {
				t.Fatalf("decision %d depends on input order: %+v vs %+v", i, a, b)
			}
		}
		if len(plan.Decisions) == 0 {
			return
		}
		counts := make(map[string]int)
		for i, d := range plan.Decisions {
			s := d.Snapshot
			mustKeep := s.Pinned || i == len(plan.Decisions)-1 || rules.IsZero() || s.End.After(now) ||
				(floorH > 0 && !s.End.Before(now.Add(-rules.Floor))) ||
				(pitrH > 0 && !s.End.Before(now.Add(-rules.PITRWindow))) ||
				(s.ID == plan.PITRBase && s.End.Equal(plan.PITRFrom))
			if mustKeep && !d.Keep {
				t.Errorf("%+v deleted", s)
			}
			for _, r := range d.Reasons {
				kind, _, _ := strings.Cut(r, " ")
				counts[kind]++
			}
		}
		for kind, limit := range map[string]int{"daily": rules.Daily, "weekly": rules.Weekly, "monthly": rules.Monthly, "yearly": rules.Yearly} {
			if counts[kind] > limit {
				t.Errorf("%d %s picks, limit %d", counts[kind], kind, limit)
			}
		}
		if counts["pitr"] > 0 && plan.PITRBase == "" {
			t.Errorf("pitr reasons without a base")
		}
	})
}

// TestUntrustedSnapshotsTakeNoSlot: a snapshot the caller cannot vouch for
// is kept, and is never the newest, a window's base or a bucket's pick, so
// it cannot push a genuine snapshot out.
func TestUntrustedSnapshotsTakeNoSlot(t *testing.T) {
	t.Parallel()
	now := wall(t, time.UTC, "2026-03-10 12:00")
	real1 := Snapshot{ID: "a", End: wall(t, time.UTC, "2026-03-01 02:00")}
	real2 := Snapshot{ID: "b", End: wall(t, time.UTC, "2026-03-05 02:00")}
	sameDay := Snapshot{ID: "x", End: real2.End.Add(time.Second), Untrusted: "stored days later"}
	future := Snapshot{ID: "y", End: now.Add(365 * day), Untrusted: "from the future", Pinned: true}
	plan := Decide([]Snapshot{future, real1, sameDay, real2}, Rules{Daily: 2, PITRWindow: day}, now)
	got := map[string]Decision{}
	var order []string
	for _, d := range plan.Decisions {
		got[d.Snapshot.ID] = d
		order = append(order, d.Snapshot.ID)
	}
	if want := []string{"a", "b", "x", "y"}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	if !got["a"].Keep || !got["b"].Keep || !slices.Contains(got["b"].Reasons, "newest") || !slices.Contains(got["b"].Reasons, "daily 2026-03-05") {
		t.Fatalf("genuine snapshots: %+v %+v", got["a"], got["b"])
	}
	if plan.PITRBase != "b" {
		t.Fatalf("PITR base %q, want b", plan.PITRBase)
	}
	if d := got["x"]; !d.Keep || !slices.Equal(d.Reasons, []string{"untrusted: stored days later"}) || !d.KeepUntil.IsZero() {
		t.Fatalf("untrusted snapshot: %+v", d)
	}
	if d := got["y"]; !d.Keep || !slices.Equal(d.Reasons, []string{"untrusted: from the future", "pinned"}) {
		t.Fatalf("untrusted pinned snapshot: %+v", d)
	}
}
