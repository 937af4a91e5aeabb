package health

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

const testPolicy = `
repositories:
  - { name: main, url: "file:///srv/repo", passphrase: x }
  - { name: dr, url: "file:///srv/dr", passphrase: x }
tiers:
  critical: { rpo: 5m, rto: 1h }
check: { grace: 30m }
assets:
  - name: ledger
    kind: postgres
    tier: critical
    repositories: [main, dr]
    schedule: "CRON_TZ=UTC 0 3 * * *"
    drill:
      schedule: "CRON_TZ=UTC 0 4 1 * *"
  - name: cfg
    kind: files
    repositories: [main]
`

func find(t *testing.T, rs []Result, asset, check, subject string) Result {
	t.Helper()
	for _, r := range rs {
		if r.Asset == asset && r.Check == check && r.Subject == subject {
			return r
		}
	}
	t.Fatalf("no %s/%s/%s result in %+v", asset, check, subject, rs)
	return Result{}
}

func TestEvaluate(t *testing.T) {
	// The kinds' own keys (pgdata, paths) are no matter of health: the
	// kinds here take none.
	p, err := policy.Parse([]byte(testPolicy), "lifeboat.yaml", policy.Kinds{lifeboat.KindPostgres: nil, lifeboat.KindFiles: nil})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	slot := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	healthy := func() Facts {
		return Facts{Now: now,
			Assets: map[string]*AssetFacts{"ledger": {
				PrimaryRead: true, PITR: true, NewestBackup: slot.Add(2 * time.Second),
				WAL:    &WALFacts{LagSeconds: 30, Detail: "from the server"},
				Copies: []CopyFacts{{Repository: "dr", Read: true}},
				Drills: []*evidence.DrillReport{{Started: time.Date(2026, 11, 1, 4, 0, 5, 0, time.UTC), Passed: true}},
			}},
			Verifies: map[string]Verify{"main": {At: now.Add(-time.Hour), OK: true}},
		}
	}
	rs := Evaluate(p, healthy())
	for _, r := range rs {
		if !r.OK {
			t.Errorf("healthy: %+v", r)
		}
	}
	if r := find(t, rs, "", CheckVerify, "dr"); !strings.Contains(r.Message, "never verified") {
		t.Errorf("dr verify: %+v", r)
	}

	// A schedule missed by one run fails, naming the slot.
	f := healthy()
	f.Assets["ledger"].NewestBackup = slot.Add(-24 * time.Hour)
	if r := find(t, Evaluate(p, f), "ledger", CheckBackup, ""); r.OK || !strings.Contains(r.Message, "missed the 2026-11-23 03:00:00 UTC slot") {
		t.Errorf("missed slot: %+v", r)
	}
	// Within the grace after a slot the previous backup still counts.
	f = healthy()
	f.Now = slot.Add(20 * time.Minute)
	f.Assets["ledger"].NewestBackup = slot.Add(-24 * time.Hour)
	if r := find(t, Evaluate(p, f), "ledger", CheckBackup, ""); !r.OK {
		t.Errorf("within grace: %+v", r)
	}
	// WAL lag beyond the tier's RPO fails; a failing archiver fails.
	f = healthy()
	f.Assets["ledger"].WAL.LagSeconds = 301
	if r := find(t, Evaluate(p, f), "ledger", CheckWALLag, ""); r.OK || !strings.Contains(r.Message, "exceeds the critical tier's RPO 5m") || *r.Value != 301 {
		t.Errorf("WAL lag: %+v", r)
	}
	f = healthy()
	f.Assets["ledger"].WAL.Failing = "000000010000000000000007 at 11:58"
	if r := find(t, Evaluate(p, f), "ledger", CheckWALLag, ""); r.OK || !strings.Contains(r.Message, "archiving is failing") {
		t.Errorf("archiver failing: %+v", r)
	}
	// A copy lacking an old snapshot, or WAL older than the RPO, fails; one
	// catching up on recent data does not.
	f = healthy()
	f.Assets["ledger"].Copies[0] = CopyFacts{Repository: "dr", Read: true, MissingSnapshots: 1, OldestMissing: now.Add(-2 * time.Hour)}
	if r := find(t, Evaluate(p, f), "ledger", CheckCopy, "dr"); r.OK || !strings.Contains(r.Message, "lacks 1 snapshots") {
		t.Errorf("copy snapshot lag: %+v", r)
	}
	f.Assets["ledger"].Copies[0] = CopyFacts{Repository: "dr", Read: true, WALFiles: 3, WALSeconds: 600}
	if r := find(t, Evaluate(p, f), "ledger", CheckCopy, "dr"); r.OK || !strings.Contains(r.Message, "lacks 3 WAL files") {
		t.Errorf("copy WAL lag: %+v", r)
	}
	f.Assets["ledger"].Copies[0] = CopyFacts{Repository: "dr", Read: true, WALFiles: 1, WALSeconds: 20}
	if r := find(t, Evaluate(p, f), "ledger", CheckCopy, "dr"); !r.OK {
		t.Errorf("copy catching up: %+v", r)
	}
	// No passing drill since the drill slot fails, with the failure named.
	f = healthy()
	f.Assets["ledger"].Drills = []*evidence.DrillReport{{Started: time.Date(2026, 11, 1, 4, 0, 5, 0, time.UTC), Error: "check \"rows\" failed"}}
	if r := find(t, Evaluate(p, f), "ledger", CheckDrill, ""); r.OK || !strings.Contains(r.Message, `check "rows" failed`) {
		t.Errorf("failed drill: %+v", r)
	}
	f.Assets["ledger"].Drills = []*evidence.DrillReport{{Started: time.Date(2026, 10, 1, 4, 0, 5, 0, time.UTC), Passed: true}}
	if r := find(t, Evaluate(p, f), "ledger", CheckDrill, ""); r.OK || !strings.Contains(r.Message, "missed the 2026-11-01 04:00:00 UTC drill slot") {
		t.Errorf("missed drill: %+v", r)
	}
	// A failed verify and an unreadable repository fail.
	f = healthy()
	f.Verifies["main"] = Verify{At: now, Error: "pack 1234abcd: damaged"}
	f.Unreadable = map[string]string{"dr": "connection refused"}
	rs = Evaluate(p, f)
	if r := find(t, rs, "", CheckVerify, "main"); r.OK || !strings.Contains(r.Message, "pack 1234abcd") {
		t.Errorf("verify: %+v", r)
	}
	if r := find(t, rs, "", CheckRepository, "dr"); r.OK || !strings.Contains(r.Message, "connection refused") {
		t.Errorf("unreadable: %+v", r)
	}
	// An asset without a schedule has no backup check.
	for _, r := range rs {
		if r.Asset == "cfg" && r.Check == CheckBackup {
			t.Errorf("unscheduled asset checked: %+v", r)
		}
	}
}

// TestSetup: the source's set-up is one line per asset, failing on the
// first problem the probes found, and absent when none ran.
func TestSetup(t *testing.T) {
	t.Parallel()
	p := &policy.Policy{Assets: []policy.Asset{{Name: "db", Kind: "postgres"}, {Name: "files", Kind: "files"}}}
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	f := Facts{Now: now, Assets: map[string]*AssetFacts{
		"db":    {PrimaryRead: true, Setup: &SetupFacts{Passed: []string{"clock"}, Failures: []string{"pgdata: wrong", "archive_user: cannot read"}}},
		"files": {PrimaryRead: true},
	}}
	var got []Result
	for _, r := range Evaluate(p, f) {
		if r.Check == CheckSetup {
			got = append(got, r)
		}
	}
	if len(got) != 1 || got[0].Asset != "db" || got[0].OK || !strings.Contains(got[0].Message, "pgdata: wrong (and 1 more; lifeboat doctor)") {
		t.Fatalf("setup results %+v", got)
	}
	f.Assets["db"].Setup.Failures = nil
	for _, r := range Evaluate(p, f) {
		if r.Check == CheckSetup && (!r.OK || r.Message != "clock fine") {
			t.Fatalf("passing setup: %+v", r)
		}
	}
}
