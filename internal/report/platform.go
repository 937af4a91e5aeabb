package report

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Platform exercises (lifeboat drill --platform) fill the plans' "Full DR
// failover drill" row of the Backup Testing Schedule and a line each in
// the DR Test Results Log; their member drills are drills like any other
// and have rows of their own.

// PlatformName is what the schedule and the log call a platform exercise.
const PlatformName = "Full DR failover drill"

// PlatformKind is the Kind of the log rows and the schedule row of
// platform exercises.
const PlatformKind = "platform"

// PlatformRow is what the log row of a platform exercise carries besides
// its totals: the tiers in recovery order and the member drills.
type PlatformRow struct {
	Group     string                `json:"group,omitempty"`
	FreshHost bool                  `json:"fresh_host"`
	Parallel  int                   `json:"parallel"`
	Failed    []string              `json:"failed"`
	Tiers     []evidence.TierResult `json:"tiers"`
	Members   []evidence.Member     `json:"members"`
}

// addPlatform puts the platform exercises of the period into the
// schedule, the log and the summary: when the policy has a platform_drill
// or an exercise is on record.
func addPlatform(r *Report, p *policy.Policy, in Input) {
	var ps []*evidence.PlatformReport
	for _, x := range in.Platform {
		if x != nil && inPeriod(x.Started, in.Since) {
			ps = append(ps, x)
		}
	}
	pd := p.PlatformDrill
	if pd == nil && len(ps) == 0 {
		return
	}
	slices.SortStableFunc(ps, func(a, b *evidence.PlatformReport) int { return b.Started.Compare(a.Started) })
	row := ScheduleRow{Asset: PlatformName, Kind: PlatformKind, Point: "tier order", InPolicy: pd != nil, Result: ResultUntested}
	scope, from, fresh := "every asset", "", false
	if pd != nil {
		row.Schedule = pd.Schedule
		scope, from, fresh = cmp.Or(groupText(pd.Group), scope), pd.Repository, pd.FreshHost
	} else {
		scope, from, fresh = cmp.Or(groupText(ps[0].Group), scope), ps[0].Repository, ps[0].FreshHost
	}
	row.Type = "platform exercise of " + scope + " in tier order"
	if from != "" {
		row.Type += " from " + from
	}
	if fresh {
		row.Type += ", fresh host"
	}
	row.Frequency, _ = frequency(row.Schedule)
	for _, x := range ps {
		r.Summary.Drills++
		switch {
		case x.Aborted:
			r.Summary.Aborted++
			continue
		case x.Passed:
			r.Summary.Passed++
		default:
			r.Summary.Failed++
		}
		row.Drills++
		if x.Passed {
			row.Passed++
		}
		if row.LastTest.IsZero() {
			row.LastTest, row.LastDrill, row.Result = x.Started, x.ID, ResultFail
			if x.Passed {
				row.Result = ResultPass
			}
		}
		r.Log = append(r.Log, platformLogRow(x))
	}
	r.Schedule = append(r.Schedule, row)
	slices.SortStableFunc(r.Log, func(a, b LogRow) int { return b.Date.Compare(a.Date) })
}

func groupText(g string) string {
	if g == "" {
		return ""
	}
	return "group " + g
}

// platformLogRow is an exercise's line of the DR Test Results Log: the
// platform's RTO (until the last asset was back) and the worst RPO of its
// drills; its RTO verdict holds when every tier was back within its RTO.
func platformLogRow(x *evidence.PlatformReport) LogRow {
	l := LogRow{Drill: x.ID, Date: x.Started, Ended: x.Ended, Asset: PlatformName, Kind: PlatformKind,
		Repository: x.Repository, Host: x.Host, Trigger: x.Trigger, Point: "tier order",
		RTOSeconds: x.RTOSeconds, RTOMeasured: !x.Aborted, RPOSeconds: x.RPOSeconds, RPOMeasured: !x.Aborted,
		Passed: x.Passed, Aborted: x.Aborted, Error: x.Error, Issues: slices.Clone(x.Issues),
		Phases: []evidence.Phase{}, Checks: []evidence.Check{},
		Platform: &PlatformRow{Group: x.Group, FreshHost: x.FreshHost, Parallel: x.Parallel, Failed: slices.Clone(x.Failed),
			Tiers: x.Tiers, Members: x.Members}}
	if l.Issues == nil {
		l.Issues = []string{}
	}
	if l.Platform.Failed == nil {
		l.Platform.Failed = []string{}
	}
	for _, t := range x.Tiers {
		if t.RTOMet == nil {
			continue
		}
		met := *t.RTOMet && (l.RTOMet == nil || *l.RTOMet)
		l.RTOMet = &met
		// The target shown is the last tier's: the one the platform as a
		// whole is back within.
		l.RTOTargetSeconds = t.RTOTargetSeconds
	}
	return l
}

// platformDetails is an exercise's part of the drill details: each tier
// against its RTO, then each asset with its drill.
func platformDetails(i int, l LogRow) section {
	result := "PASS"
	switch {
	case l.Aborted:
		result = "ABORTED"
	case !l.Passed:
		result = "FAIL"
	}
	x := l.Platform
	sub := section{ID: "drill-" + strconv.Itoa(i+1), Title: fmt.Sprintf("%s · %s · %s", timeText(l.Date), l.Asset, result)}
	from := "each asset's drill repository"
	if l.Repository != "" {
		from = "repository " + l.Repository
	}
	if x.FreshHost {
		from += " on a fresh host (no other repository, no local state)"
	}
	scope := cmp.Or(groupText(x.Group), "every asset of the policy")
	sub.Intro = append(sub.Intro,
		fmt.Sprintf("Platform exercise %s, %s run on host %s, ended %s: %s restored from %s in tier order, %s at once.",
			l.Drill, orDash(l.Trigger), orDash(l.Host), timeText(l.Ended), scope, from, plural(x.Parallel, "drill")),
		fmt.Sprintf("Platform RTO (until the last asset was back) %s; worst RPO %s.", seconds(l.RTOSeconds), seconds(l.RPOSeconds)))
	if len(x.Failed) > 0 {
		sub.Intro = append(sub.Intro, "Failed: "+strings.Join(x.Failed, ", ")+".")
	}
	tiers := table{Head: []string{"Tier", "Assets", "Back after", "RTO target", "Result"}, Empty: "No tier."}
	for _, t := range x.Tiers {
		res := cell{Text: "PASS", Mark: good}
		if !t.Passed {
			res = flagged("FAIL")
		}
		back := txt(seconds(t.RTOSeconds))
		if t.RTOMet != nil && !*t.RTOMet {
			back = flagged(seconds(t.RTOSeconds))
		}
		tiers.Rows = append(tiers.Rows, []cell{txt(orDash(t.Tier)), txt(strings.Join(t.Assets, ", ")), back, txt(target(t.RTOTargetSeconds)), res})
	}
	members := table{Head: []string{"Asset", "Tier", "Drill", "Started", "RTO", "RPO", "Result", "Error"}, Empty: "No asset."}
	for _, m := range x.Members {
		res := cell{Text: "PASS", Mark: good}
		if !m.Passed {
			res = flagged("FAIL")
		}
		members.Rows = append(members.Rows, []cell{txt(m.Asset), txt(orDash(m.Tier)), {Text: orDash(m.Drill), Mark: code},
			txt(timeText(m.Started)), txt(seconds(m.RTOSeconds)), txt(seconds(m.RPOSeconds)), res, txt(orDash(m.Error))})
	}
	sub.Tables = []table{tiers, members}
	return sub
}
