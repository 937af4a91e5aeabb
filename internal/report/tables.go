package report

import (
	"fmt"
	"strconv"
	"strings"
)

// The Markdown and HTML formats draw the same document: the Report's rows
// turned into cells of text once, here, so that both show the same values
// to the character. Each format only escapes and lays the cells out.

// document is a report as text: a title, its header facts and sections.
type document struct {
	Title    string
	Facts    []fact
	Sections []section
}

type fact struct{ Name, Value string }

type section struct {
	ID     string // anchor of the HTML format
	Title  string
	Intro  []string
	Tables []table
	Notes  []string
	// Code are shell blocks (comment lines, then commands), shown
	// verbatim after the notes: the runbook's lines are copied and run.
	Code []string
	Subs []section
}

type table struct {
	Head  []string
	Rows  [][]cell
	Empty string // said instead of a table without rows
}

// cell is one table cell; Mark says how it stands out.
type cell struct {
	Text string
	Mark mark
}

type mark int

const (
	plain mark = iota
	good       // a pass
	bad        // a failure, a miss or a gap an auditor must see
	code       // cron text and IDs, shown verbatim
)

func (m mark) Class() string {
	switch m {
	case good:
		return "good"
	case bad:
		return "bad"
	}
	return ""
}

func (m mark) Code() bool { return m == code }

func txt(s string) cell     { return cell{Text: s} }
func flagged(s string) cell { return cell{Text: s, Mark: bad} }

func drawDocument(r *Report) document {
	d := document{
		Title: "Disaster-recovery report",
		Facts: []fact{
			{"Generated", timeText(r.Generated)},
			{"Host", orDash(r.Host)},
			{"Period", r.Period},
			{"Policy", orDash(r.Policy)},
		},
	}
	d.Sections = []section{
		drawSummary(r),
		drawSchedule(r),
		drawLog(r),
		drawObjectives(r),
		drawForecasts(r),
		drawBackups(r),
		drawDetails(r),
	}
	if r.Runbook != nil {
		d.Sections = append(d.Sections, drawRunbookSection(r.Runbook))
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func drawSummary(r *Report) section {
	s := r.Summary
	out := section{ID: "summary", Title: "Summary"}
	counts := fmt.Sprintf("%s in the period: %d passed, %d failed", plural(s.Drills, "drill"), s.Passed, s.Failed)
	if s.Aborted > 0 {
		counts += fmt.Sprintf(", %d stopped before they finished", s.Aborted)
	}
	out.Intro = append(out.Intro, counts+".")
	if len(s.Untested) > 0 {
		out.Intro = append(out.Intro, "Not tested in the period: "+strings.Join(s.Untested, ", ")+".")
	}
	if len(s.FailedLast) > 0 {
		out.Intro = append(out.Intro, "Newest drill failed: "+strings.Join(s.FailedLast, ", ")+".")
	}
	if len(s.ObjectivesMissed) > 0 {
		out.Intro = append(out.Intro, "Objectives missed: "+strings.Join(s.ObjectivesMissed, ", ")+".")
	}
	if len(r.Unscheduled) > 0 {
		out.Intro = append(out.Intro, "No restore drill configured or recorded: "+strings.Join(r.Unscheduled, ", ")+".")
	}
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func drawSchedule(r *Report) section {
	out := section{ID: "testing-schedule", Title: "Backup Testing Schedule",
		Intro: []string{"Each asset whose restores are drilled: how, how often, and how the newest drill in the period ended."}}
	t := table{
		Head:  []string{"Asset", "Type", "Frequency", "Last test", "Result", "Drills in period"},
		Empty: "No asset has a drill configured or recorded.",
	}
	for _, s := range r.Schedule {
		freq := txt(s.Frequency)
		if s.Schedule != "" && s.Frequency == s.Schedule {
			freq.Mark = code
		}
		var result cell
		switch s.Result {
		case ResultPass:
			result = cell{Text: "PASS", Mark: good}
		case ResultFail:
			result = flagged("FAIL")
		default:
			result = flagged(untested(r))
		}
		last := "—"
		if !s.LastTest.IsZero() {
			last = timeText(s.LastTest)
		}
		t.Rows = append(t.Rows, []cell{
			txt(s.Asset), txt(s.Type), freq, txt(last), result,
			txt(drillCount(s)),
		})
	}
	out.Tables = []table{t}
	if len(r.Unscheduled) > 0 {
		out.Notes = append(out.Notes, "Assets with no drill configured and none recorded in the period (their restores are not tested): "+
			strings.Join(r.Unscheduled, ", ")+".")
	}
	return out
}

func drillCount(s ScheduleRow) string {
	if s.Drills == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%d passed)", s.Drills, s.Passed)
}

// untested is the result of an asset without a drill: "never tested" over
// all records, or not tested within the period (there may be older ones).
func untested(r *Report) string {
	if r.Since.IsZero() {
		return "never tested"
	}
	return "not tested since " + timeText(r.Since)
}

func drawLog(r *Report) section {
	out := section{ID: "test-results", Title: "DR Test Results Log",
		Intro: []string{"Every restore drill in the period, newest first. RTO and RPO are rounded to the whole second; the targets are those the drill was held to."}}
	t := table{
		Head: []string{"Date", "Asset", "Point / target", "Snapshot", "RTO achieved", "RPO achieved",
			"Targets", "Objectives", "Result", "Issues found"},
		Empty: "No drill in the period.",
	}
	for _, l := range r.Log {
		point := l.Point
		if !l.Target.IsZero() {
			point += " → " + timeText(l.Target)
		}
		rto := txt(seconds(l.RTOSeconds))
		if !l.RTOMeasured {
			rto = flagged(seconds(l.RTOSeconds) + " (stopped before checks)")
		}
		rpo := txt(seconds(l.RPOSeconds))
		if !l.RPOMeasured {
			rpo = flagged("not measured")
		}
		result := cell{Text: "PASS", Mark: good}
		switch {
		case l.Aborted:
			result = txt("ABORTED")
		case !l.Passed:
			result = flagged("FAIL")
		}
		issues := txt("none")
		if len(l.Issues) > 0 {
			issues = flagged(strings.Join(l.Issues, "; "))
		}
		t.Rows = append(t.Rows, []cell{
			txt(timeText(l.Date)), txt(l.Asset), txt(point), {Text: shortID(l.Snapshot), Mark: code},
			rto, rpo, txt(targets(l.RTOTargetSeconds, l.RPOTargetSeconds)), verdicts(l),
			result, issues,
		})
	}
	out.Tables = []table{t}
	return out
}

func target(s float64) string {
	if s <= 0 {
		return "none"
	}
	return seconds(s)
}

func targets(rto, rpo float64) string {
	if rto <= 0 && rpo <= 0 {
		return "none"
	}
	return "RTO " + target(rto) + " / RPO " + target(rpo)
}

// verdicts writes a drill's own judgement of its objectives: met or
// missed as the drill decided, "not judged" where it had a target but
// gave no verdict (a drill that stopped before measuring).
func verdicts(l LogRow) cell {
	if l.RTOTargetSeconds <= 0 && l.RPOTargetSeconds <= 0 && l.RTOMet == nil && l.RPOMet == nil {
		return txt("no targets")
	}
	word := func(b *bool, target float64) string {
		switch {
		case b != nil && *b:
			return "met"
		case b != nil:
			return "missed"
		case target > 0:
			return "not judged"
		}
		return "no target"
	}
	c := txt("RTO " + word(l.RTOMet, l.RTOTargetSeconds) + ", RPO " + word(l.RPOMet, l.RPOTargetSeconds))
	// Anything short of "met" against a target is what a reader must see.
	unmet := func(b *bool, target float64) bool { return isFalse(b) || (b == nil && target > 0) }
	if unmet(l.RTOMet, l.RTOTargetSeconds) || unmet(l.RPOMet, l.RPOTargetSeconds) {
		c.Mark = bad
	}
	return c
}

func drawObjectives(r *Report) section {
	out := section{ID: "objectives", Title: "Objectives",
		Intro: []string{"Each tiered asset's targets (from the current policy) against the worst and the latest value its drills in the period measured."}}
	t := table{
		Head:  []string{"Asset", "Tier", "RPO target", "RPO worst", "RPO latest", "RTO target", "RTO worst", "RTO latest", "Result"},
		Empty: "No asset has a tier.",
	}
	for _, o := range r.Objectives {
		rpoWorst, rpoLatest := measured(o.RPO)
		rtoWorst, rtoLatest := measured(o.RTO)
		t.Rows = append(t.Rows, []cell{
			txt(o.Asset), txt(o.Tier),
			txt(target(o.RPO.TargetSeconds)), rpoWorst, rpoLatest,
			txt(target(o.RTO.TargetSeconds)), rtoWorst, rtoLatest,
			objectiveResult(o),
		})
	}
	out.Tables = []table{t}
	if len(r.Untiered) > 0 {
		out.Notes = append(out.Notes, "Assets without a tier, so without objectives: "+strings.Join(r.Untiered, ", ")+".")
	}
	return out
}

func measured(o Objective) (worst, latest cell) {
	if o.Measurements == 0 {
		return flagged("not measured"), flagged("not measured")
	}
	worst, latest = txt(seconds(o.WorstSeconds)), txt(seconds(o.LatestSeconds))
	if isFalse(o.Met) {
		worst.Mark = bad
	}
	if o.TargetSeconds > 0 && o.LatestSeconds > o.TargetSeconds {
		latest.Mark = bad
	}
	return worst, latest
}

func objectiveResult(o ObjectiveRow) cell {
	switch o.Status {
	case StatusMet:
		return cell{Text: "met", Mark: good}
	case StatusMissed:
		var missed []string
		if isFalse(o.RPO.Met) {
			missed = append(missed, "RPO")
		}
		if isFalse(o.RTO.Met) {
			missed = append(missed, "RTO")
		}
		return flagged("missed (" + strings.Join(missed, ", ") + ")")
	}
	if o.RPO.Measurements == 0 && o.RTO.Measurements == 0 {
		return flagged("not measured")
	}
	var parts []string
	for _, x := range []struct {
		name string
		o    Objective
	}{{"RPO", o.RPO}, {"RTO", o.RTO}} {
		switch {
		case x.o.Measurements == 0:
			parts = append(parts, x.name+" not measured")
		case x.o.Met == nil:
			parts = append(parts, x.name+" without target")
		default:
			parts = append(parts, x.name+" met")
		}
	}
	return flagged(strings.Join(parts, ", "))
}

func drawForecasts(r *Report) section {
	out := section{ID: "forecast", Title: "Restore throughput and forecast",
		Intro: []string{
			"Throughput is the amount the newest drill in the period that completed a restore (passed or not) wrote, divided by the time of its fetch and write phases. " +
				"The forecast RTO is the asset's current size divided by that throughput, plus the time the same drill spent in its other phases (WAL replay, start, checks).",
		}}
	t := table{
		Head: []string{"Asset", "Drill", "Restored", "Fetch + write", "Throughput", "Other phases",
			"Current size", "Forecast RTO", "RTO target", "Forecast vs target"},
		Empty: "No asset is drilled or tiered.",
	}
	for _, f := range r.Forecasts {
		if f.Drill == "" {
			t.Rows = append(t.Rows, []cell{
				txt(f.Asset), flagged("no completed drill"), txt("—"), txt("—"), txt("—"), txt("—"),
				txt(sizeText(f.SizeBytes)), txt("—"), txt(target(f.RTOTargetSeconds)), flagged(f.Status),
			})
			continue
		}
		rate, forecast := txt("—"), txt("—")
		if f.ThroughputBps > 0 {
			rate = txt(rateText(f.ThroughputBps))
		}
		if f.ForecastSeconds > 0 {
			forecast = txt(seconds(f.ForecastSeconds))
		}
		status := txt(f.Status)
		switch f.Status {
		case ForecastWithin:
			status.Mark = good
		case ForecastExceeds:
			status.Mark, forecast.Mark = bad, bad
		}
		t.Rows = append(t.Rows, []cell{
			txt(f.Asset), drillCell(f), txt(bytesText(f.DrillBytes)), txt(phaseSeconds(f.FetchWriteSeconds)),
			rate, txt(phaseSeconds(f.OtherSeconds)), txt(sizeText(f.SizeBytes)), forecast,
			txt(target(f.RTOTargetSeconds)), status,
		})
	}
	out.Tables = []table{t}
	return out
}

// drillCell names the drill a forecast comes from, with its result, so a
// reader sees when it rests on a failed drill.
func drillCell(f ForecastRow) cell {
	if f.DrillPassed {
		return txt(timeText(f.DrillDate) + " (PASS)")
	}
	return flagged(timeText(f.DrillDate) + " (FAIL)")
}

func sizeText(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	return bytesText(n)
}

func drawBackups(r *Report) section {
	out := section{ID: "backups", Title: "Backups",
		Intro: []string{"Backup runs that started in the period, by how they ended."}}
	t := table{
		Head:  []string{"Asset", "Schedule", "Runs", "OK", "Failed", "Aborted", "Skipped", "Last success", "Last failure"},
		Empty: "The policy names no asset and no run is recorded.",
	}
	for _, b := range r.Backups {
		freq := txt(b.Frequency)
		if b.Schedule != "" && b.Frequency == b.Schedule {
			freq.Mark = code
		}
		success := flagged("none in the period")
		if !b.LastSuccess.IsZero() {
			success = txt(timeText(b.LastSuccess))
			if b.LastSnapshot != "" {
				success.Text += " (" + shortID(b.LastSnapshot) + ")"
			}
		}
		failure := txt("—")
		if !b.LastFailure.IsZero() {
			failure = flagged(timeText(b.LastFailure))
			if b.LastError != "" {
				failure.Text += ": " + b.LastError
			}
		}
		failed := txt(strconv.Itoa(b.Failed))
		if b.Failed > 0 {
			failed.Mark = bad
		}
		t.Rows = append(t.Rows, []cell{
			txt(b.Asset), freq, txt(strconv.Itoa(b.Runs)), txt(strconv.Itoa(b.OK)), failed,
			txt(strconv.Itoa(b.Aborted)), txt(strconv.Itoa(b.Skipped)), success, failure,
		})
	}
	out.Tables = []table{t}
	return out
}

// drawDetails documents each drill's procedure: what was restored from
// where, each phase and each check, as R-DRILL asks every test to be.
func drawDetails(r *Report) section {
	out := section{ID: "drill-details", Title: "Drill details",
		Intro: []string{"What each drill of the log did. Phase and check times are to one decimal of a second."}}
	if len(r.Log) == 0 {
		out.Intro = append(out.Intro, "No drill in the period.")
	}
	for i, l := range r.Log {
		if l.Platform != nil {
			out.Subs = append(out.Subs, platformDetails(i, l))
			continue
		}
		result := "PASS"
		switch {
		case l.Aborted:
			result = "ABORTED"
		case !l.Passed:
			result = "FAIL"
		}
		sub := section{
			ID:    "drill-" + strconv.Itoa(i+1),
			Title: fmt.Sprintf("%s · %s · %s", timeText(l.Date), l.Asset, result),
		}
		sub.Intro = append(sub.Intro,
			fmt.Sprintf("Drill %s, %s run on host %s, ended %s.", l.Drill, orDash(l.Trigger), orDash(l.Host), timeText(l.Ended)),
			fmt.Sprintf("Restored %s snapshot %s (taken %s) from repository %s to the %s point %s.",
				orDash(l.Kind), orDash(l.Snapshot), timeText(l.SnapshotTime), orDash(l.Repository), orDash(l.Point), timeText(l.Target)),
		)
		restored := "Wrote " + bytesText(l.Bytes)
		if l.WALFiles > 0 {
			restored += " and fetched " + plural(l.WALFiles, "WAL file")
		}
		if l.RPOMeasured {
			restored += "; the newest transaction recovered is from " + timeText(l.Recovered)
		}
		sub.Intro = append(sub.Intro, restored+".")
		if l.Error != "" {
			sub.Intro = append(sub.Intro, "Error: "+l.Error)
		}
		phases := table{Head: []string{"Phase", "Time"}, Empty: "No phase was timed."}
		for _, p := range l.Phases {
			phases.Rows = append(phases.Rows, []cell{txt(p.Name), txt(phaseSeconds(p.Seconds))})
		}
		if len(l.Phases) > 0 {
			phases.Rows = append(phases.Rows, []cell{txt("RTO (all phases)"), txt(seconds(l.RTOSeconds))})
		}
		checks := table{Head: []string{"Check", "Type", "Database", "Expected", "Got", "Time", "Result", "Detail"},
			Empty: "No check ran."}
		for _, c := range l.Checks {
			res := cell{Text: "PASS", Mark: good}
			if !c.Passed {
				res = flagged("FAIL")
			}
			checks.Rows = append(checks.Rows, []cell{
				txt(c.Name), txt(c.Type), txt(orDash(c.Database)), txt(orDash(c.Expect)), txt(orDash(c.Got)),
				txt(phaseSeconds(c.Seconds)), res, txt(orDash(c.Detail)),
			})
		}
		sub.Tables = []table{phases, checks}
		out.Subs = append(out.Subs, sub)
	}
	return out
}
