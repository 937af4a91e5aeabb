package report

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// The report rounds in one place each, so that the same record shows the
// same value in every table and every format:
//
//   - RTO, RPO, their targets and forecasts: whole seconds, rounded to
//     the nearest (seconds formats them);
//   - phase and check times: one decimal (phaseSeconds);
//   - sizes and throughput: decimal units, one decimal (bytesText,
//     rateText), so that size divided by rate is the arithmetic a reader
//     does in their head.
//
// JSON carries the records' values unrounded.

// timeLayout is how every moment is written: UTC, to the second, so that
// an RPO "to the second" can be checked against the times beside it.
const timeLayout = lifeboat.TimeLayout

func timeText(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	// Rounded, not truncated, like the durations beside it: a recovered
	// 19:19:47.8 against a target 19:20:00 reads :48 and an RPO of 12s.
	return t.UTC().Round(time.Second).Format(timeLayout)
}

// seconds formats a duration in seconds as "1h 4m 12s", rounded to the
// whole second; days are written out past 24 hours ("2d 3h 0m 0s").
// Every unit below the largest is kept ("1h 0m 5s") so that columns read
// alike.
func seconds(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "—"
	}
	n := int64(math.Round(s))
	sign := ""
	if n < 0 {
		sign, n = "-", -n
	}
	d, h, m, sec := n/86400, n/3600%24, n/60%60, n%60
	switch {
	case d > 0:
		return fmt.Sprintf("%s%dd %dh %dm %ds", sign, d, h, m, sec)
	case h > 0:
		return fmt.Sprintf("%s%dh %dm %ds", sign, h, m, sec)
	case m > 0:
		return fmt.Sprintf("%s%dm %ds", sign, m, sec)
	}
	return fmt.Sprintf("%s%ds", sign, sec)
}

// phaseSeconds formats a phase or check time to one decimal.
func phaseSeconds(s float64) string {
	return strconv.FormatFloat(s, 'f', 1, 64) + " s"
}

// bytesText formats a size in binary units (KiB, MiB, GiB: powers of
// 1024), as the CLI does.
func bytesText(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= 1024
		if v < 1024 || unit == "PiB" {
			return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
		}
	}
	panic("unreachable")
}

// rateText formats a throughput in bytes per second as MiB/s (2^20 bytes).
func rateText(bps float64) string {
	return strconv.FormatFloat(bps/(1<<20), 'f', 1, 64) + " MiB/s"
}

// shortID is the first 8 characters of a snapshot or report ID, as the
// other commands print them.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// manualOnly is the frequency of an asset whose drills only run by hand.
const manualOnly = "manual only"

// frequency describes a drill or backup schedule in words when it is one
// of the simple shapes plans are written in (daily, weekly on a day,
// monthly on a date, every N months, yearly), and returns the cron text
// unchanged otherwise; words is false then. A schedule without CRON_TZ is
// read in UTC (policy.ParseSchedule), so the words say UTC.
func frequency(spec string) (text string, words bool) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return manualOnly, true
	}
	zone := "UTC"
	if strings.HasPrefix(s, "CRON_TZ=") || strings.HasPrefix(s, "TZ=") {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			return spec, false
		}
		zone = s[strings.IndexByte(s, '=')+1 : i]
		s = strings.TrimSpace(s[i+1:])
	}
	if d, ok := describe(s, zone); ok {
		return d, true
	}
	return spec, false
}

func describe(s, zone string) (string, bool) {
	switch s {
	case "@hourly":
		return "hourly at :00", true
	case "@daily", "@midnight":
		return "daily at 00:00 " + zone, true
	case "@weekly":
		return "weekly on Sunday at 00:00 " + zone, true
	case "@monthly":
		return "monthly on the 1st at 00:00 " + zone, true
	case "@yearly", "@annually":
		return "yearly on 1 January at 00:00 " + zone, true
	}
	if rest, ok := strings.CutPrefix(s, "@every "); ok {
		return "every " + strings.TrimSpace(rest), true
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return "", false
	}
	minute, ok := number(f[0], 0, 59)
	if !ok {
		return "", false
	}
	dom, month, dow := f[2], f[3], f[4]
	if f[1] == "*" {
		if dom == "*" && month == "*" && dow == "*" {
			return fmt.Sprintf("hourly at :%02d", minute), true
		}
		return "", false
	}
	hour, ok := number(f[1], 0, 23)
	if !ok {
		return "", false
	}
	at := fmt.Sprintf("at %02d:%02d %s", hour, minute, zone)

	if dom == "*" && month == "*" {
		if dow == "*" {
			return "daily " + at, true
		}
		if d, ok := weekday(dow); ok {
			return "weekly on " + d + " " + at, true
		}
		if a, b, ok := strings.Cut(dow, "-"); ok {
			da, oka := weekday(a)
			db, okb := weekday(b)
			if oka && okb {
				return da + " to " + db + " " + at, true
			}
		}
		return "", false
	}
	if dow != "*" {
		return "", false
	}
	day, ok := number(dom, 1, 31)
	if !ok {
		return "", false
	}
	on := "the " + ordinal(day)
	switch {
	case month == "*":
		return "monthly on " + on + " " + at, true
	case month == "*/3" || month == "1-12/3":
		return "quarterly (January, April, July, October) on " + on + " " + at, true
	case strings.HasPrefix(month, "*/"):
		n, ok := number(month[2:], 2, 12)
		if !ok {
			return "", false
		}
		return fmt.Sprintf("every %d months from January on %s %s", n, on, at), true
	}
	var names []string
	for _, m := range strings.Split(month, ",") {
		name, ok := monthName(m)
		if !ok {
			return "", false
		}
		names = append(names, name)
	}
	if len(names) == 1 {
		return fmt.Sprintf("yearly on %d %s %s", day, names[0], at), true
	}
	return "on " + on + " of " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1] + " " + at, true
}

// number reads a plain decimal field within [lo, hi].
func number(s string, lo, hi int) (int, bool) {
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi || strconv.Itoa(n) != s {
		return 0, false
	}
	return n, true
}

var weekdays = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

var months = []string{"January", "February", "March", "April", "May", "June", "July", "August",
	"September", "October", "November", "December"}

// weekday reads one day-of-week field: 0-7 (0 and 7 are Sunday) or a
// three-letter name, as cron does.
func weekday(s string) (string, bool) {
	if n, ok := number(s, 0, 7); ok {
		return weekdays[n%7], true
	}
	for _, d := range weekdays {
		if strings.EqualFold(s, d[:3]) {
			return d, true
		}
	}
	return "", false
}

func monthName(s string) (string, bool) {
	if n, ok := number(s, 1, 12); ok {
		return months[n-1], true
	}
	for _, m := range months {
		if strings.EqualFold(s, m[:3]) {
			return m, true
		}
	}
	return "", false
}

func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return strconv.Itoa(n) + suffix
}
