package report

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestPlatformExercises: a platform_drill in the policy adds the "Full DR
// failover drill" row to the testing schedule (untested until one ran);
// each exercise is a line of the log, with its tiers and members under
// the drill details, in every format.
func TestPlatformExercises(t *testing.T) {
	in := fixture()
	in.Policy.PlatformDrill = &policy.PlatformDrill{Schedule: "0 3 1 1,7 *", Repository: "offsite", FreshHost: true}
	md := render(t, "md", in)
	sched := column(t, parseTable(t, md, "Backup Testing Schedule"), "Result")
	if got := sched[PlatformName]; got != "**never tested**" {
		t.Fatalf("untested exercise shows %q", got)
	}
	if !strings.Contains(md, "Not tested in the period: uploads, "+PlatformName+".") {
		t.Errorf("summary does not name the untested exercise:\n%s", md)
	}

	yes, no := true, false
	start := at("2026-11-20T03:00:00Z")
	in.Platform = []*evidence.PlatformReport{{
		Version: 1, ID: "Pexercise-1", Repository: "offsite", FreshHost: true, Host: "dr1", Trigger: "schedule", Parallel: 2,
		Started: start, Ended: start.Add(10 * time.Minute), RTOSeconds: 545.4, RPOSeconds: 61.2,
		Tiers: []evidence.TierResult{
			{Tier: "critical", Assets: []string{"ledger"}, RTOSeconds: 400.2, RTOTargetSeconds: 3600, RTOMet: &yes, Passed: true},
			{Tier: "standard", Assets: []string{"dumps", "uploads"}, RTOSeconds: 545.4, RTOTargetSeconds: 300, RTOMet: &no, Passed: false},
		},
		Members: []evidence.Member{
			{Asset: "ledger", Kind: "postgres", Tier: "critical", Drill: "d-1", Started: start, RTOSeconds: 400.2, Passed: true},
			{Asset: "dumps", Kind: "pg_dump", Tier: "standard", Drill: "d-2", Started: start.Add(time.Minute), RTOSeconds: 45, Passed: true},
			{Asset: "uploads", Kind: "files", Tier: "standard", Started: start.Add(time.Minute), Error: "asset uploads is not kept in repository offsite"},
		},
		Failed: []string{"uploads"}, Error: "1 of 3 assets failed: uploads",
		Issues: []string{"uploads: asset uploads is not kept in repository offsite", "tier standard back after 9m5s, beyond its RTO 5m0s"},
	}}
	md = render(t, "md", in)
	sched = column(t, parseTable(t, md, "Backup Testing Schedule"), "Result")
	if got := sched[PlatformName]; got != "**FAIL**" {
		t.Fatalf("exercise shows %q", got)
	}
	log := parseTable(t, md, "DR Test Results Log")
	for _, r := range log { // keyed by Asset, not Date
		r[0], r[1] = r[1], r[0]
	}
	rto, objectives := column(t, log, "RTO achieved"), column(t, log, "Objectives")
	if rto[PlatformName] != "9m 5s" || objectives[PlatformName] != "**RTO missed, RPO no target**" {
		t.Errorf("log line: RTO %q, objectives %q", rto[PlatformName], objectives[PlatformName])
	}
	for _, want := range []string{
		"Platform exercise Pexercise-1, schedule run on host dr1",
		"| standard | dumps, uploads | **9m 5s** | 5m 0s | **FAIL** |",
		"| uploads | standard | `—` |",
		"platform exercise of every asset in tier order from offsite, fresh host",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if js := render(t, "json", in); !strings.Contains(js, `"kind": "platform"`) || !strings.Contains(js, `"drill": "d-2"`) {
		t.Errorf("json lacks the exercise:\n%s", js)
	}
	checkHTML(t, render(t, "html", in))
}
