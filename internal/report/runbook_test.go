package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// runbookFixture: two tiers whose names sort against their RTOs, assets
// listed out of recovery order, one drilled (2 GB in 20 s of fetch and
// write, 10 s of other phases) and one untiered.
func runbookFixture() Input {
	p := &policy.Policy{
		Source: "/etc/lifeboat/policy.yaml",
		Tiers: map[string]policy.Tier{
			"a-slow": {RPO: dur(time.Hour), RTO: dur(4 * time.Hour)},
			"z-fast": {RPO: dur(5 * time.Minute), RTO: dur(time.Hour)},
		},
		Assets: []policy.Asset{
			{Name: "uploads", Kind: lifeboat.KindFiles, Tier: "a-slow"},
			{Name: "ledger", Kind: lifeboat.KindPostgres, Tier: "z-fast"},
			{Name: "scratch", Kind: lifeboat.KindSQLite},
			{Name: "sessions", Kind: lifeboat.KindSQLite, Tier: "z-fast"},
		},
	}
	drill := &evidence.DrillReport{Version: 1, ID: "20261201-ledger", Asset: "ledger", Kind: "postgres", Repository: "offsite",
		Started: at("2026-12-01T04:00:00Z"), Ended: at("2026-12-01T04:00:30Z"), Bytes: 2_000_000_000, Passed: true, RTOSeconds: 30,
		Phases: []evidence.Phase{{Name: evidence.PhaseFetch, Seconds: 12}, {Name: evidence.PhaseWrite, Seconds: 8},
			{Name: evidence.PhaseReplay, Seconds: 5}, {Name: evidence.PhaseStart, Seconds: 3}, {Name: evidence.PhaseChecks, Seconds: 2}}}
	return Input{Policy: p, Drills: []*evidence.DrillReport{drill}, Sizes: map[string]int64{"ledger": 4_000_000_000, "sessions": 1 << 20},
		Generated: at("2026-12-05T10:00:00Z"), Host: "db1",
		Runbook: []RunbookAsset{{Name: "ledger", Kind: "postgres",
			Repositories: []RunbookRepository{{Name: "primary", Role: "primary", Location: "s3://b/l"}, {Name: "offsite", Role: "copy", Location: "s3://c/l"}},
			Latest:       []Command{{What: "newest", Line: "lifeboat restore ledger --to /r/ledger"}},
			Checks:       []Command{{What: "count | pipes stay", Line: "find /r -type f | wc -l"}}}}}
}

func TestRunbookOrderAndForecast(t *testing.T) {
	t.Parallel()
	rb := BuildRunbook(runbookFixture())
	var order []string
	for _, tier := range rb.Tiers {
		for _, a := range tier.Assets {
			order = append(order, tier.Tier+"/"+a.Name)
		}
	}
	if got := strings.Join(order, " "); got != "z-fast/ledger z-fast/sessions a-slow/uploads /scratch" {
		t.Fatalf("recovery order %s", got)
	}
	ledger := rb.Tiers[0].Assets[0]
	// 2 GB in 20 s is 100 MB/s: 4 GB in 40 s, plus 10 s of the other phases.
	if f := ledger.Forecast; f.ForecastSeconds != 50 || f.OtherSeconds != 10 || f.Status != ForecastWithin {
		t.Fatalf("forecast %+v", f)
	}
	if ledger.LastDrill == nil || ledger.LastDrill.Drill != "20261201-ledger" || len(ledger.Repositories) != 2 {
		t.Fatalf("ledger entry %+v", ledger)
	}

	var md bytes.Buffer
	if err := RenderRunbook(&md, "md", runbookFixture()); err != nil {
		t.Fatal(err)
	}
	page := md.String()
	for _, want := range []string{
		"RTO forecast: 50s for 3.7 GiB at 95.4 MiB/s (drill of 2026-12-01 04:00:00 UTC), of which 10s in replay, start and checks; target 1h 0m 0s: within target.",
		"Last drill: 2026-12-01 04:00:00 UTC PASS from offsite, RTO 30s",
		"```sh\n# Restore the latest point\n# newest\nlifeboat restore ledger --to /r/ledger\n```",
		"find /r -type f | wc -l\n", // verbatim: copied and run as it is
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the runbook lacks %q:\n%s", want, page)
		}
	}
	// Undrilled assets say so, in both lines.
	sessions := page[strings.Index(page, "### sessions"):strings.Index(page, "### uploads")]
	if strings.Count(sessions, NoDrillYet) != 2 {
		t.Errorf("sessions, never drilled:\n%s", sessions)
	}
	for i, name := range []string{"### ledger", "### sessions", "### uploads", "### scratch"} {
		if j := strings.Index(page, name); j < 0 || i > 0 && j < strings.Index(page, []string{"### ledger", "### sessions", "### uploads"}[i-1]) {
			t.Errorf("%s missing or out of order", name)
		}
	}

	var html bytes.Buffer
	if err := RenderRunbook(&html, "html", runbookFixture()); err != nil {
		t.Fatal(err)
	}
	if text := checkHTML(t, html.String()); !strings.Contains(text, "find /r -type f | wc -l") {
		t.Errorf("html runbook lacks the command:\n%s", text)
	}
	var js bytes.Buffer
	if err := RenderRunbook(&js, "json", runbookFixture()); err != nil {
		t.Fatal(err)
	}
	var back Runbook
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Tiers) != 3 {
		t.Fatalf("json runbook: %v, %d tiers", err, len(back.Tiers))
	}
	if err := RenderRunbook(&js, "pdf", runbookFixture()); err == nil || !strings.Contains(err.Error(), "use md, html or json") {
		t.Fatalf("unknown format: %v", err)
	}

	// The DR report carries the runbook when the input has it.
	var rep bytes.Buffer
	if err := Render(&rep, "md", runbookFixture()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.String(), "## Recovery runbook") || !strings.Contains(rep.String(), "### ledger (postgres) · z-fast") {
		t.Errorf("the DR report lacks the runbook:\n%s", rep.String())
	}
}
