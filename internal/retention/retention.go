// Package retention decides which backup snapshots a retention policy keeps.
//
// It is pure: no I/O, no repository, no clock. The caller describes the
// snapshots of one asset as []Snapshot and the policy as Rules, passes the
// current time, and carries out the returned Plan. Keeping the decision
// separate from the deletion lets it be previewed (a dry run prints the same
// Plan that a real run executes) and tested on a fake calendar.
//
// # Semantics
//
// Snapshots are ordered by End, the time of their consistent point, then by
// Timeline, then by ID. Names and IDs never decide age. "Newest" below means
// last in that order.
//
// A rule whose duration or count is zero or negative is off. A snapshot is
// kept when at least one of the following keeps it, and Decision.Reasons
// lists every one that does, in this order:
//
//   - "within pitr window": End >= now-PITRWindow.
//   - "pitr window base": the newest snapshot with End < now-PITRWindow,
//     because restoring to the first moment of the window needs a base
//     backup taken before it. When no snapshot is older than the window
//     start, the oldest snapshot is the base. Plan.PITRBase and
//     Plan.PITRFrom name it; WAL from its start on must be kept.
//   - "keep_within <d>": End >= now-KeepWithin, e.g. "keep_within 90d".
//   - "floor <d>": End >= now-Floor, e.g. "floor 7d". The floor is the
//     repository's minimum age and protects; it never causes a deletion on
//     its own (see below).
//   - "daily <yyyy-mm-dd>", "weekly <yyyy>-W<ww>", "monthly <yyyy-mm>",
//     "yearly <yyyy>": grandfather-father-son counts as in restic. For Daily N
//     the snapshots are walked newest first and bucketed by calendar day in
//     Rules.Location; the newest snapshot of each of the N most recent days
//     that have a snapshot is kept, so days without backups do not use up a
//     slot. Weekly buckets by ISO 8601 week (its year may differ from the
//     calendar year around New Year), Monthly by year and month, Yearly by
//     calendar year. The counters are independent: one snapshot may be the
//     pick of several of them. The buckets are relative to the snapshots,
//     not to now.
//   - "pinned: <reason>" (or "pinned" without a reason): a legal hold.
//   - "newest": the newest snapshot is always kept, so a policy can never
//     delete the last restorable backup.
//   - "future": End > now. A snapshot from the future (clock skew) is always
//     kept; it also counts as within every window above.
//   - "untrusted: <why>": the caller could not vouch for the snapshot's
//     End (Snapshot.Untrusted). It is kept, takes no part in any rule
//     above (it is never "newest", never a window's base, never a
//     bucket's pick), so a snapshot written to steer retention cannot
//     push a genuine one out.
//
// A deleted snapshot has the single reason "no rule keeps it".
//
// When Rules.IsZero reports that no retention rule is set, every snapshot is
// kept with the reason "no retention rules" (plus its pin, if any): a policy
// without retention never deletes. A Floor alone does not count as a rule.
//
// # KeepUntil
//
// Decision.KeepUntil is the latest time any of the snapshot's reasons needs
// it, for extending object locks. Each reason contributes:
//
//   - within pitr window: End+PITRWindow; keep_within: End+KeepWithin;
//     floor: End+Floor.
//   - pitr window base: next.End+PITRWindow, where next is the snapshot
//     right after the base in the order above; the base stops being needed
//     once next leaves the window and becomes the base itself.
//   - daily: End plus Daily calendar days; weekly: End plus 7*Weekly
//     calendar days; monthly: End.AddDate(0, Monthly, 0); yearly:
//     End.AddDate(Yearly, 0, 0); all computed on the wall clock of
//     Rules.Location, so a daylight-saving change does not shift the hour.
//     These assume about one backup per bucket; they are estimates, not
//     promises.
//   - future: End.
//   - pinned, newest and "no retention rules": indefinitely.
//
// If any reason is indefinite, or the snapshot is deleted, KeepUntil is the
// zero time. Otherwise it is the maximum of the contributions, expressed in
// Rules.Location.
package retention

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Rules is a retention policy, already translated from the policy file.
type Rules struct {
	// PITRWindow keeps what is needed to restore to any moment of the last
	// PITRWindow: every snapshot inside it and one base snapshot before it.
	PITRWindow time.Duration
	// KeepWithin keeps every snapshot that ended within this long before now.
	KeepWithin time.Duration
	// Floor is the repository minimum: no snapshot younger than this is
	// deleted, whatever the policy says (a "7-day minimum in every copy").
	Floor time.Duration
	// Daily, Weekly, Monthly and Yearly are grandfather-father-son counts:
	// how many of the most recent days (ISO weeks, months, years) that have
	// a snapshot keep their newest snapshot.
	Daily, Weekly, Monthly, Yearly int
	// Location is the calendar for day, week, month and year buckets; nil
	// means UTC. A backup at 23:30 UTC belongs to the next day in Singapore.
	Location *time.Location
}

// IsZero reports whether r has no retention rule, in which case Decide keeps
// everything. Floor and Location are not rules: a floor only protects, so a
// policy without retention never deletes even when the repository has one.
func (r Rules) IsZero() bool {
	return r.PITRWindow <= 0 && r.KeepWithin <= 0 &&
		r.Daily <= 0 && r.Weekly <= 0 && r.Monthly <= 0 && r.Yearly <= 0
}

// Snapshot is what retention needs to know about one snapshot.
type Snapshot struct {
	// ID identifies the snapshot to the caller; it only breaks ties.
	ID string
	// End is the snapshot's real end time (its consistent point), not the
	// time in its name.
	End time.Time
	// Timeline is the PostgreSQL timeline, 0 for other asset kinds; it
	// breaks ties between equal End times.
	Timeline uint32
	// Pinned marks a legal hold: the snapshot is always kept.
	Pinned bool
	// PinReason says why it is pinned; it is shown in the reasons.
	PinReason string
	// Untrusted says why End cannot be relied on ("" when it can): the
	// snapshot is kept and left out of every rule.
	Untrusted string
}

// Decision is the verdict on one snapshot.
type Decision struct {
	Snapshot Snapshot
	// Keep is false when the snapshot may be deleted.
	Keep bool
	// Reasons lists every rule that keeps the snapshot, in the order of the
	// package documentation, or "no rule keeps it" for a deletion.
	Reasons []string
	// KeepUntil is the latest time any reason needs the snapshot; the zero
	// time means indefinitely (or, when Keep is false, not at all).
	KeepUntil time.Time
}

// Plan is the outcome of Decide.
type Plan struct {
	// Decisions has one entry per input snapshot, oldest first by End
	// (ties: Timeline, then ID).
	Decisions []Decision
	// PITRFrom is the End of the snapshot kept as the PITR window's base;
	// zero when there is no PITR window or no snapshot.
	PITRFrom time.Time
	// PITRBase is the ID of that base snapshot, "" if none.
	PITRBase string
}

// Reason strings that carry no parameter.
const (
	reasonNoRules    = "no retention rules"
	reasonDelete     = "no rule keeps it"
	reasonPITRWithin = "within pitr window"
	reasonPITRBase   = "pitr window base"
	reasonNewest     = "newest"
	reasonFuture     = "future"
)

// verdict collects the reasons of one snapshot while the rules run.
type verdict struct {
	reasons    []string
	until      time.Time
	indefinite bool
}

func (v *verdict) add(reason string, until time.Time) {
	v.reasons = append(v.reasons, reason)
	if until.After(v.until) {
		v.until = until
	}
}

func (v *verdict) addForever(reason string) {
	v.reasons = append(v.reasons, reason)
	v.indefinite = true
}

// Decide applies rules to snaps as of now and returns a decision for every
// snapshot. It does not modify snaps.
func Decide(snaps []Snapshot, rules Rules, now time.Time) Plan {
	loc := rules.Location
	if loc == nil {
		loc = time.UTC
	}
	now = now.Round(0) // compare wall clocks only, never a monotonic reading

	var trusted, untrusted []Snapshot
	for _, s := range snaps {
		if s.Untrusted != "" {
			untrusted = append(untrusted, s)
		} else {
			trusted = append(trusted, s)
		}
	}
	plan := decideTrusted(trusted, rules, now, loc)
	for _, s := range untrusted {
		d := Decision{Snapshot: s, Keep: true, Reasons: []string{"untrusted: " + s.Untrusted}}
		if s.Pinned {
			d.Reasons = append(d.Reasons, pinReason(s))
		}
		plan.Decisions = append(plan.Decisions, d)
	}
	slices.SortStableFunc(plan.Decisions, func(a, b Decision) int { return compareSnapshots(a.Snapshot, b.Snapshot) })
	return plan
}

// decideTrusted applies the rules to the snapshots whose End is trusted.
func decideTrusted(snaps []Snapshot, rules Rules, now time.Time, loc *time.Location) Plan {
	sorted := slices.Clone(snaps)
	slices.SortStableFunc(sorted, compareSnapshots)
	plan := Plan{Decisions: make([]Decision, len(sorted))}
	if len(sorted) == 0 {
		return plan
	}

	vs := make([]verdict, len(sorted))
	if rules.IsZero() {
		for i := range vs {
			vs[i].addForever(reasonNoRules)
		}
	} else {
		base := applyPITR(sorted, vs, rules.PITRWindow, now, loc)
		if base >= 0 {
			plan.PITRFrom = sorted[base].End
			plan.PITRBase = sorted[base].ID
		}
		applyWithin(sorted, vs, rules.KeepWithin, now, loc, "keep_within ")
		applyWithin(sorted, vs, rules.Floor, now, loc, "floor ")
		applyGFS(sorted, vs, rules, loc)
	}
	for i, s := range sorted {
		if s.Pinned {
			vs[i].addForever(pinReason(s))
		}
	}
	if !rules.IsZero() {
		vs[len(vs)-1].addForever(reasonNewest)
		for i, s := range sorted {
			if s.End.After(now) {
				vs[i].add(reasonFuture, s.End.In(loc))
			}
		}
	}

	for i, s := range sorted {
		d := Decision{Snapshot: s, Keep: len(vs[i].reasons) > 0, Reasons: vs[i].reasons}
		switch {
		case !d.Keep:
			d.Reasons = []string{reasonDelete}
		case !vs[i].indefinite:
			d.KeepUntil = vs[i].until
		}
		plan.Decisions[i] = d
	}
	return plan
}

func pinReason(s Snapshot) string {
	if s.PinReason != "" {
		return "pinned: " + s.PinReason
	}
	return "pinned"
}

// compareSnapshots orders by End, then Timeline, then ID.
func compareSnapshots(a, b Snapshot) int {
	if c := a.End.Compare(b.End); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Timeline, b.Timeline); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// applyPITR marks the window and its base and returns the base's index, or
// -1 when the window is off.
func applyPITR(sorted []Snapshot, vs []verdict, window time.Duration, now time.Time, loc *time.Location) int {
	if window <= 0 {
		return -1
	}
	start := now.Add(-window)
	base := 0 // when nothing predates the window, the oldest snapshot is the base
	for i, s := range sorted {
		if s.End.Before(start) {
			base = i
			continue
		}
		vs[i].add(reasonPITRWithin, s.End.Add(window).In(loc))
	}
	// The base is needed until the snapshot after it leaves the window and
	// takes over; the newest snapshot has no successor but is kept anyway.
	var until time.Time
	if base+1 < len(sorted) {
		until = sorted[base+1].End.Add(window).In(loc)
	}
	vs[base].add(reasonPITRBase, until)
	return base
}

// applyWithin keeps every snapshot that ended at most d before now.
func applyWithin(sorted []Snapshot, vs []verdict, d time.Duration, now time.Time, loc *time.Location, prefix string) {
	if d <= 0 {
		return
	}
	start := now.Add(-d)
	reason := prefix + formatDuration(d)
	for i, s := range sorted {
		if !s.End.Before(start) {
			vs[i].add(reason, s.End.Add(d).In(loc))
		}
	}
}

// gfsRule is one grandfather-father-son counter.
type gfsRule struct {
	name   string
	count  int
	bucket func(t time.Time) string    // t is already in the rules' location
	until  func(t time.Time) time.Time // likewise
}

// applyGFS runs the Daily, Weekly, Monthly and Yearly counters
// independently, each walking the snapshots newest first.
func applyGFS(sorted []Snapshot, vs []verdict, r Rules, loc *time.Location) {
	rules := []gfsRule{
		{"daily", r.Daily,
			func(t time.Time) string { return t.Format("2006-01-02") },
			func(t time.Time) time.Time { return t.AddDate(0, 0, r.Daily) }},
		{"weekly", r.Weekly,
			func(t time.Time) string {
				y, w := t.ISOWeek()
				return fmt.Sprintf("%04d-W%02d", y, w)
			},
			func(t time.Time) time.Time { return t.AddDate(0, 0, 7*r.Weekly) }},
		{"monthly", r.Monthly,
			func(t time.Time) string { return t.Format("2006-01") },
			func(t time.Time) time.Time { return t.AddDate(0, r.Monthly, 0) }},
		{"yearly", r.Yearly,
			func(t time.Time) string { return t.Format("2006") },
			func(t time.Time) time.Time { return t.AddDate(r.Yearly, 0, 0) }},
	}
	for _, g := range rules {
		if g.count <= 0 {
			continue
		}
		// A set rather than "same as the previous bucket": a zone whose
		// clocks jump back across midnight would otherwise split a day.
		seen := make(map[string]bool)
		for i := len(sorted) - 1; i >= 0 && len(seen) < g.count; i-- {
			t := sorted[i].End.In(loc)
			b := g.bucket(t)
			if seen[b] {
				continue
			}
			seen[b] = true
			vs[i].add(g.name+" "+b, g.until(t))
		}
	}
}

// formatDuration writes whole days as "90d" (the way policies spell them)
// and anything else in Go syntax without zero tails ("36h", "1h30m").
func formatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
