package scheduler

import (
	"time"

	"github.com/robfig/cron/v3"
)

// NextSlot is the first slot of s strictly after t, with two corrections
// to robfig/cron's wall-clock arithmetic around daylight-saving changes,
// so that a nightly job runs exactly once every night:
//
//   - When clocks spring forward, wall times in the skipped interval never
//     happen, and cron would skip a job set inside it (02:30 in Europe/Oslo
//     on the last Sunday of March) until the next day. Such a slot runs at
//     the moment of the change instead (03:00 local), once, however many
//     slots fell in the gap — as Vixie and ISC cron do.
//   - When clocks fall back, an hour of wall times happens twice, and cron
//     would run a job set inside it twice. A wall time is served once: its
//     second occurrence is skipped.
//
// Schedules that are not wall-clock based (@every 10m) are left alone.
// The zero time means the schedule never fires again.
func NextSlot(s cron.Schedule, t time.Time) time.Time {
	spec, ok := s.(*cron.SpecSchedule)
	if !ok {
		return s.Next(t)
	}
	loc := spec.Location
	if loc == time.Local {
		loc = t.Location()
	}
	// Every round moves past one repeated wall time; a year holds only a
	// few, so the bound is never reached by a real zone.
	for range 64 {
		c := spec.Next(t)
		if c.IsZero() {
			return c
		}
		if g, ok := gapSlot(spec, loc, t, c); ok {
			return g.In(t.Location())
		}
		if !repeatedWallTime(c.In(loc)) {
			return c
		}
		t = c
	}
	return time.Time{}
}

// gapSlot finds a clock change in (t, c] that skipped wall times in which
// spec has a slot, and returns the instant of that change.
func gapSlot(spec *cron.SpecSchedule, loc *time.Location, t, c time.Time) (time.Time, bool) {
	u := t.In(loc)
	for {
		_, end := u.ZoneBounds()
		if end.IsZero() || end.After(c) {
			return time.Time{}, false
		}
		_, before := end.Add(-time.Nanosecond).Zone()
		_, after := end.Zone()
		if after > before && gapMatches(spec, end, before, after) {
			return end, true
		}
		u = end
	}
}

// gapMatches reports whether spec matches a wall time that the change at
// instant end, from UTC offset before to after (seconds), skipped. Wall
// times are handled as UTC readings so that no zone rules interfere.
func gapMatches(spec *cron.SpecSchedule, end time.Time, before, after int) bool {
	from := end.UTC().Add(time.Duration(before) * time.Second)
	to := end.UTC().Add(time.Duration(after) * time.Second)
	for w := from; w.Before(to); w = w.Add(time.Second) {
		if matches(spec, w) {
			return true
		}
	}
	return false
}

// starBit is how robfig/cron marks a field written as "*" (or "?"); it
// changes how day of month and day of week combine.
const starBit = 1 << 63

// matches reports whether the wall reading w (as a UTC time) is a slot of
// spec, with cron's rule that a restricted day of month and day of week
// match either of them.
func matches(s *cron.SpecSchedule, w time.Time) bool {
	if 1<<uint(w.Month())&s.Month == 0 || 1<<uint(w.Hour())&s.Hour == 0 ||
		1<<uint(w.Minute())&s.Minute == 0 || 1<<uint(w.Second())&s.Second == 0 {
		return false
	}
	dom := 1<<uint(w.Day())&s.Dom != 0
	dow := 1<<uint(w.Weekday())&s.Dow != 0
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// repeatedWallTime reports whether the wall reading of t (in its own
// location) already happened once before, earlier in the hour that a
// fall-back change repeats.
func repeatedWallTime(t time.Time) bool {
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := t.Zone()
	_, prev := start.Add(-time.Nanosecond).Zone()
	return prev > now && t.Sub(start) < time.Duration(prev-now)*time.Second
}

// PrevSlot is the last slot of s at or before t, and false when s has none
// in the five years before t. Cron schedules cannot be walked backwards, so
// it walks forwards from ever earlier starts until one holds a slot.
func PrevSlot(s cron.Schedule, t time.Time) (time.Time, bool) {
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour,
		367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour} {
		var last time.Time
		for slot := NextSlot(s, t.Add(-back)); !slot.IsZero() && !slot.After(t); slot = NextSlot(s, slot) {
			last = slot
		}
		if !last.IsZero() {
			return last, true
		}
	}
	return time.Time{}, false
}
