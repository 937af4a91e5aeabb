package report

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func boolp(b bool) *bool { return &b }

func dur(d time.Duration) policy.Duration { return policy.Duration(d) }

// fixture is a small platform after two months of drills: a ledger whose
// newest drill failed (a WAL segment missing) after one that passed and
// one that failed a validation query and its RTO; a dump that passed; an
// untiered SQLite database tested by hand; an uploads asset scheduled but
// never tested; a git asset with no drill at all; and a drill of an asset
// the policy no longer names.
func fixture() Input {
	p := &policy.Policy{
		Source: "/etc/lifeboat/policy.yaml",
		Tiers: map[string]policy.Tier{
			"critical": {RPO: dur(5 * time.Minute), RTO: dur(time.Hour)},
			"standard": {RPO: dur(time.Hour), RTO: dur(4 * time.Hour)},
		},
		Assets: []policy.Asset{
			{Name: "ledger", Kind: lifeboat.KindPostgres, Tier: "critical", Schedule: "CRON_TZ=Europe/Oslo 0 2 * * *",
				Drill: &policy.Drill{Schedule: "CRON_TZ=Europe/Oslo 0 4 1 * *", Point: policy.DrillRandom}},
			{Name: "dumps", Kind: lifeboat.KindPGDump, Tier: "standard", Schedule: "30 3 * * *",
				Drill: &policy.Drill{Schedule: "0 3 * * 0", Point: policy.DrillLatest}},
			{Name: "appdb", Kind: lifeboat.KindSQLite, Schedule: "@daily",
				Drill: &policy.Drill{Point: policy.DrillLatest}},
			{Name: "uploads", Kind: lifeboat.KindFiles, Tier: "standard", Schedule: "CRON_TZ=Asia/Singapore 0 1 * * *",
				Drill: &policy.Drill{Schedule: "CRON_TZ=Asia/Singapore 0 5 1-7 * 1", Point: policy.DrillLatest}},
			{Name: "source", Kind: lifeboat.KindGit},
		},
	}
	drills := []*evidence.DrillReport{
		{
			Version: 1, ID: "drill-ledger-4", Asset: "ledger", Kind: "postgres", Tier: "critical", Repository: "primary",
			Host: "db1", Trigger: "schedule", Point: "random", Target: at("2026-11-18T09:41:27Z"),
			Snapshot: "9f3c2a71d0e4b5a6c7d8e9f00112233445566778899aabbccddeeff001122334", SnapshotTime: at("2026-11-18T01:00:04Z"),
			Started: at("2026-11-20T03:00:02Z"), Ended: at("2026-11-20T03:00:55Z"),
			Phases:     []evidence.Phase{{Name: "fetch", Seconds: 30.24}, {Name: "write", Seconds: 12.06}, {Name: "wal_replay", Seconds: 5.0}},
			RTOSeconds: 47.3, RTOTargetSeconds: 3600, RPOTargetSeconds: 300,
			Bytes: 9_800_000_000, WALFiles: 41, Checks: []evidence.Check{},
			Error:  "fetch WAL segment 00000001000000000000002A: not in repository primary",
			Issues: []string{"WAL segment 00000001000000000000002A is missing from repository primary"},
		},
		{
			Version: 1, ID: "drill-dumps-1", Asset: "dumps", Kind: "pg_dump", Tier: "standard", Repository: "dumps",
			Host: "db1", Trigger: "schedule", Point: "latest", Target: at("2026-11-15T03:30:11Z"),
			Snapshot: "44aa55bb66cc77dd88ee99ff00112233445566778899aabbccddeeff00112233", SnapshotTime: at("2026-11-15T03:30:11Z"),
			Started: at("2026-11-15T03:00:00Z"), Ended: at("2026-11-15T03:01:35Z"),
			Phases: []evidence.Phase{{Name: "fetch", Seconds: 10}, {Name: "write", Seconds: 30}, {Name: "start", Seconds: 3},
				{Name: "checks", Seconds: 2}},
			RTOSeconds: 45, Recovered: at("2026-11-15T03:30:11Z"), RPOSeconds: 0,
			RTOTargetSeconds: 14400, RPOTargetSeconds: 3600, RTOMet: boolp(true), RPOMet: boolp(true),
			Bytes: 2_000_000_000, Passed: true,
			Checks: []evidence.Check{{Name: "pg_amcheck", Type: "integrity", Passed: true, Seconds: 1.5, Database: "app"}},
		},
		{
			Version: 1, ID: "drill-appdb-1", Asset: "appdb", Kind: "sqlite", Repository: "primary",
			Host: "db1", Trigger: "manual", Point: "latest", Target: at("2026-11-10T00:00:03Z"),
			Snapshot: "abcdef0123456789", SnapshotTime: at("2026-11-10T00:00:03Z"),
			Started: at("2026-11-10T08:12:45Z"), Ended: at("2026-11-10T08:12:47Z"),
			Phases:     []evidence.Phase{{Name: "fetch", Seconds: 0.6}, {Name: "write", Seconds: 0.2}, {Name: "checks", Seconds: 0.55}},
			RTOSeconds: 1.35, Recovered: at("2026-11-10T00:00:03Z"), RPOSeconds: 0, Bytes: 40_000_000, Passed: true,
			Checks: []evidence.Check{{Name: "integrity_check", Type: "integrity", Got: "ok", Passed: true, Seconds: 0.5}},
		},
		{
			Version: 1, ID: "drill-ledger-3", Asset: "ledger", Kind: "postgres", Tier: "critical", Repository: "primary",
			Host: "db1", Trigger: "schedule", Point: "random", Target: at("2026-10-29T14:02:51Z"),
			Snapshot: "0123abcd4567ef890123abcd4567ef890123abcd4567ef890123abcd4567ef89", SnapshotTime: at("2026-10-29T01:00:02Z"),
			Started: at("2026-11-01T03:00:12Z"), Ended: at("2026-11-01T03:04:25Z"),
			Phases: []evidence.Phase{{Name: "fetch", Seconds: 150}, {Name: "write", Seconds: 50}, {Name: "wal_replay", Seconds: 30.2},
				{Name: "start", Seconds: 2.1}, {Name: "checks", Seconds: 20.1}},
			RTOSeconds: 252.4, Recovered: at("2026-10-29T14:02:02.4Z"), RPOSeconds: 48.6,
			RTOTargetSeconds: 3600, RPOTargetSeconds: 300, RTOMet: boolp(true), RPOMet: boolp(true),
			Bytes: 10_000_000_000, WALFiles: 87, Passed: true,
			Checks: []evidence.Check{
				{Name: "pg_amcheck", Type: "integrity", Passed: true, Seconds: 18.2},
				{Name: "ledger has rows", Type: "query", Expect: ">= 1000", Got: "48213", Passed: true, Seconds: 0.04, Database: "ledger"},
			},
		},
		{
			Version: 1, ID: "drill-oldapp-1", Asset: "oldapp", Kind: "sqlite", Repository: "primary",
			Host: "db2", Trigger: "manual", Point: "time", Target: at("2026-10-20T12:00:00Z"),
			Snapshot: "77777777aaaaaaaa", SnapshotTime: at("2026-10-20T11:00:00Z"),
			Started: at("2026-10-20T12:30:00Z"), Ended: at("2026-10-20T12:30:02Z"),
			Phases:     []evidence.Phase{{Name: "fetch", Seconds: 1}, {Name: "write", Seconds: 1}, {Name: "checks", Seconds: 0.5}},
			RTOSeconds: 2.5, Recovered: at("2026-10-20T11:00:00Z"), RPOSeconds: 3600, Bytes: 1_000_000, Passed: true,
		},
		{
			Version: 1, ID: "drill-ledger-2", Asset: "ledger", Kind: "postgres", Tier: "critical", Repository: "primary",
			Host: "db1", Trigger: "schedule", Point: "random", Target: at("2026-09-30T19:20:00Z"),
			Snapshot: "fedcba98765432100123456789abcdef0123456789abcdef0123456789abcdef", SnapshotTime: at("2026-09-30T01:00:00Z"),
			Started: at("2026-10-01T02:00:05Z"), Ended: at("2026-10-01T03:02:10Z"),
			Phases: []evidence.Phase{{Name: "fetch", Seconds: 3000}, {Name: "write", Seconds: 600}, {Name: "wal_replay", Seconds: 100},
				{Name: "start", Seconds: 3.5}, {Name: "checks", Seconds: 20.1}},
			RTOSeconds: 3723.6, Recovered: at("2026-09-30T19:19:47.8Z"), RPOSeconds: 12.2,
			RTOTargetSeconds: 3600, RPOTargetSeconds: 300, RTOMet: boolp(false), RPOMet: boolp(true),
			Bytes: 9_000_000_000, WALFiles: 300,
			Checks: []evidence.Check{
				{Name: "pg_amcheck", Type: "integrity", Passed: true, Seconds: 19.9},
				{Name: "ledger has rows", Type: "query", Expect: ">= 1000", Got: "12", Passed: false, Seconds: 0.2, Database: "ledger"},
			},
			Error: `check "ledger has rows" failed: got 12, want >= 1000`,
			Issues: []string{`check "ledger has rows": got 12, want >= 1000`,
				"RTO 1h 2m 4s exceeds the target 1h 0m 0s"},
		},
	}
	runs := []catalog.Run{
		{ID: 9, Asset: "ledger", Kind: "postgres", Trigger: "schedule", Start: at("2026-11-20T01:00:00Z"), End: at("2026-11-20T01:09:30Z"),
			Result: catalog.OK, Snapshot: "5555aaaa0000111122223333444455556666777788889999aaaabbbbccccdddd"},
		{ID: 8, Asset: "ledger", Kind: "postgres", Trigger: "schedule", Start: at("2026-11-19T01:00:00Z"), End: at("2026-11-19T01:00:03Z"),
			Result: catalog.Failed, Error: "connect: connection refused"},
		{ID: 7, Asset: "dumps", Kind: "pg_dump", Trigger: "schedule", Start: at("2026-11-19T03:30:00Z"), End: at("2026-11-19T03:31:00Z"),
			Result: catalog.OK, Snapshot: "44aa55bb66cc77dd88ee99ff00112233445566778899aabbccddeeff00112233"},
		{ID: 6, Asset: "ledger", Kind: "postgres", Trigger: "schedule", Start: at("2026-11-18T01:00:00Z"), End: at("2026-11-18T01:08:00Z"),
			Result: catalog.OK, Snapshot: "9f3c2a71d0e4b5a6c7d8e9f00112233445566778899aabbccddeeff001122334"},
		{ID: 5, Asset: "ledger", Kind: "postgres", Trigger: "schedule", Start: at("2026-11-17T01:00:00Z"), End: at("2026-11-17T02:00:00Z"),
			Result: catalog.Aborted, Error: "daemon shut down"},
		{ID: 4, Asset: "appdb", Kind: "sqlite", Trigger: "schedule", Start: at("2026-11-16T00:00:00Z"),
			Result: catalog.Skipped},
		{ID: 3, Asset: "scratch", Kind: "files", Trigger: "manual", Start: at("2026-11-02T10:00:00Z"), End: at("2026-11-02T10:00:01Z"),
			Result: catalog.OK, Snapshot: "1234"},
		{ID: 2, Asset: "ledger", Kind: "postgres", Trigger: "schedule", Start: at("2026-09-01T01:00:00Z"), End: at("2026-09-01T01:08:00Z"),
			Result: catalog.Failed, Error: "old failure"},
	}
	return Input{
		Policy:    p,
		Drills:    drills,
		Runs:      runs,
		Sizes:     map[string]int64{"ledger": 20_000_000_000, "appdb": 41_000_000},
		Generated: at("2026-11-21T09:00:00Z"),
		Host:      "db1",
	}
}

func render(t *testing.T, format string, in Input) string {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, format, in); err != nil {
		t.Fatalf("render %s: %v", format, err)
	}
	if buf.Len() == 0 {
		t.Fatalf("render %s: empty output", format)
	}
	return buf.String()
}

// TestGolden renders the fixture in every format and compares it with the
// files in testdata (go test -update rewrites them; read the diff).
func TestGolden(t *testing.T) {
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			got := render(t, format, fixture())
			path := filepath.Join("testdata", "report."+format)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s (go test -update rewrites it; check the diff)", format, path)
			}
		})
	}
}

// parseTable returns the cells of the table under the heading "## title"
// (header row first), split on unescaped pipes and unescaped.
func parseTable(t *testing.T, md, title string) [][]string {
	t.Helper()
	_, rest, ok := strings.Cut(md, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q in:\n%s", title, md)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	var rows [][]string
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") {
			continue
		}
		var cells []string
		var cur strings.Builder
		for i := 1; i < len(line); i++ {
			switch c := line[i]; {
			case c == '\\' && i+1 < len(line):
				i++
				cur.WriteByte(line[i])
			case c == '|':
				cells = append(cells, strings.TrimSpace(cur.String()))
				cur.Reset()
			default:
				cur.WriteByte(c)
			}
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		t.Fatalf("section %q has no table", title)
	}
	for i, r := range rows {
		if len(r) != len(rows[0]) {
			t.Fatalf("%s row %d has %d cells, header %d: %q", title, i, len(r), len(rows[0]), r)
		}
	}
	return rows
}

// column returns the cells of the column headed name, by the first
// column's value.
func column(t *testing.T, rows [][]string, name string) map[string]string {
	t.Helper()
	i := slices.Index(rows[0], name)
	if i < 0 {
		t.Fatalf("no column %q in %q", name, rows[0])
	}
	out := map[string]string{}
	for _, r := range rows[1:] {
		out[r[0]] = r[i]
	}
	return out
}

// TestMarkdownHoldsRecords checks that each row of the DR Test Results
// Log carries exactly its drill record's values, rounded as documented.
func TestMarkdownHoldsRecords(t *testing.T) {
	in := fixture()
	md := render(t, "md", in)
	rows := parseTable(t, md, "DR Test Results Log")
	if len(rows)-1 != len(in.Drills) {
		t.Fatalf("log has %d rows, want one per drill (%d)", len(rows)-1, len(in.Drills))
	}
	// Whole seconds, rounded to the nearest, worked out by hand from the
	// records above.
	want := map[string]struct{ rto, rpo, objectives, issues string }{
		"drill-ledger-4": {"47s (stopped before checks)", "not measured", "RTO not judged, RPO not judged",
			"WAL segment 00000001000000000000002A is missing from repository primary"},
		"drill-dumps-1":  {"45s", "0s", "RTO met, RPO met", "none"},
		"drill-appdb-1":  {"1s", "0s", "no targets", "none"},
		"drill-ledger-3": {"4m 12s", "49s", "RTO met, RPO met", "none"},
		"drill-oldapp-1": {"3s", "1h 0m 0s", "no targets", "none"},
		"drill-ledger-2": {"1h 2m 4s", "12s", "RTO missed, RPO met",
			`check "ledger has rows": got 12, want >= 1000; RTO 1h 2m 4s exceeds the target 1h 0m 0s`},
	}
	head := rows[0]
	for i, d := range in.Drills { // the fixture lists them newest first
		row := map[string]string{}
		for j, h := range head {
			row[h] = strings.Trim(rows[i+1][j], "*`")
		}
		w := want[d.ID]
		result := "FAIL"
		if d.Passed {
			result = "PASS"
		}
		for col, v := range map[string]string{
			"Date":           d.Started.UTC().Format("2006-01-02 15:04:05") + " UTC",
			"Asset":          d.Asset,
			"Point / target": d.Point + " → " + d.Target.UTC().Format("2006-01-02 15:04:05") + " UTC",
			"Snapshot":       d.Snapshot[:8],
			"RTO achieved":   w.rto,
			"RPO achieved":   w.rpo,
			"Objectives":     w.objectives,
			"Result":         result,
			"Issues found":   w.issues,
		} {
			if row[col] != v {
				t.Errorf("%s: %s = %q, want %q", d.ID, col, row[col], v)
			}
		}
	}
	if got := column(t, rows, "Targets"); got["2026-11-01 03:00:12 UTC"] != "RTO 1h 0m 0s / RPO 5m 0s" || got["2026-11-10 08:12:45 UTC"] != "none" {
		t.Errorf("targets column: %q", got)
	}

	sched := parseTable(t, md, "Backup Testing Schedule")
	for col, want := range map[string]map[string]string{
		"Type":      {"ledger": "postgres, random point", "dumps": "pg_dump, latest point", "oldapp": "sqlite, time point"},
		"Frequency": {"ledger": "monthly on the 1st at 04:00 Europe/Oslo", "dumps": "weekly on Sunday at 03:00 UTC", "appdb": "manual only", "uploads": "`CRON_TZ=Asia/Singapore 0 5 1-7 * 1`"},
		"Last test": {"ledger": "2026-11-20 03:00:02 UTC", "dumps": "2026-11-15 03:00:00 UTC", "uploads": "—"},
		"Result":    {"ledger": "**FAIL**", "dumps": "PASS", "appdb": "PASS", "uploads": "**never tested**"},
	} {
		got := column(t, sched, col)
		for asset, v := range want {
			if got[asset] != v {
				t.Errorf("schedule %s of %s = %q, want %q", col, asset, got[asset], v)
			}
		}
	}
	if _, ok := column(t, sched, "Asset")["source"]; ok {
		t.Error("source has no drill configured or recorded, yet is in the testing schedule")
	}
	if !strings.Contains(md, "(their restores are not tested): source.") {
		t.Error("the report does not name source as untested")
	}

	obj := parseTable(t, md, "Objectives")
	for col, want := range map[string]map[string]string{
		"RPO worst":  {"ledger": "49s", "dumps": "0s", "uploads": "**not measured**"},
		"RPO latest": {"ledger": "49s"},
		"RTO worst":  {"ledger": "**1h 2m 4s**", "dumps": "45s"},
		"RTO latest": {"ledger": "4m 12s"},
		"RTO target": {"ledger": "1h 0m 0s", "dumps": "4h 0m 0s"},
		"Result":     {"ledger": "**missed (RTO)**", "dumps": "met", "uploads": "**not measured**"},
	} {
		got := column(t, obj, col)
		for asset, v := range want {
			if got[asset] != v {
				t.Errorf("objectives %s of %s = %q, want %q", col, asset, got[asset], v)
			}
		}
	}
	if _, ok := column(t, obj, "Tier")["appdb"]; ok {
		t.Error("appdb has no tier, yet is in the objectives")
	}

	// ledger's newest completed drill (the newest one stopped at a
	// missing WAL segment) restored 10 GB in 150 s + 50 s: 50 MB/s
	// (47.7 MiB/s);
	// 20 GB at that rate is 400 s, plus 30.2 + 2.1 + 20.1 s of the other
	// phases: 452.4 s.
	fc := parseTable(t, md, "Restore throughput and forecast")
	for col, want := range map[string]string{
		"Drill": "2026-11-01 03:00:12 UTC (PASS)", "Throughput": "47.7 MiB/s", "Other phases": "52.4 s",
		"Current size": "18.6 GiB", "Forecast RTO": "7m 32s", "Forecast vs target": "within target",
	} {
		if got := column(t, fc, col)["ledger"]; got != want {
			t.Errorf("forecast %s of ledger = %q, want %q", col, got, want)
		}
	}
	if got := column(t, fc, "Forecast vs target")["dumps"]; got != "size unknown" {
		t.Errorf("dumps has no size, forecast says %q", got)
	}
	if got := column(t, fc, "Forecast vs target")["uploads"]; got != "**no completed drill**" {
		t.Errorf("uploads was never tested, forecast says %q", got)
	}

	bk := parseTable(t, md, "Backups")
	for col, want := range map[string]string{
		"Runs": "5", "OK": "2", "Failed": "**2**", "Aborted": "1",
		"Last success": "2026-11-20 01:09:30 UTC (5555aaaa)",
		"Last failure": "**2026-11-19 01:00:00 UTC: connect: connection refused**",
	} {
		if got := column(t, bk, col)["ledger"]; got != want {
			t.Errorf("backups %s of ledger = %q, want %q", col, got, want)
		}
	}
	if got := column(t, bk, "Skipped")["appdb"]; got != "1" {
		t.Errorf("appdb skipped = %q", got)
	}
	if got := column(t, bk, "Schedule")["scratch"]; got != "not in the policy" {
		t.Errorf("scratch schedule = %q", got)
	}
}

// TestJSONHoldsRecords decodes the JSON format and compares it with the
// drill records it came from.
func TestJSONHoldsRecords(t *testing.T) {
	in := fixture()
	var r Report
	dec := json.NewDecoder(strings.NewReader(render(t, "json", in)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Version != Version || !r.Generated.Equal(in.Generated) || r.Host != "db1" || r.Policy != "/etc/lifeboat/policy.yaml" {
		t.Errorf("header: %+v", r)
	}
	if len(r.Log) != len(in.Drills) {
		t.Fatalf("%d log rows, want %d", len(r.Log), len(in.Drills))
	}
	for i, d := range in.Drills {
		l := r.Log[i]
		if l.Drill != d.ID || l.Asset != d.Asset || l.Snapshot != d.Snapshot || !l.Date.Equal(d.Started) || !l.Target.Equal(d.Target) ||
			l.RTOSeconds != d.RTOSeconds || l.RPOSeconds != d.RPOSeconds || l.Passed != d.Passed || l.Error != d.Error ||
			l.RTOTargetSeconds != d.RTOTargetSeconds || l.RPOTargetSeconds != d.RPOTargetSeconds ||
			l.Bytes != d.Bytes || l.WALFiles != d.WALFiles || !slices.Equal(l.Issues, d.Issues) ||
			!slices.Equal(l.Phases, d.Phases) || len(l.Checks) != len(d.Checks) ||
			!sameBool(l.RTOMet, d.RTOMet) || !sameBool(l.RPOMet, d.RPOMet) || !l.Recovered.Equal(d.Recovered) {
			t.Errorf("log row %d differs from drill %s:\n got %+v\nwant %+v", i, d.ID, l, d)
		}
	}
	if r.Log[0].RTOMeasured || r.Log[0].RPOMeasured || !r.Log[3].RTOMeasured || !r.Log[3].RPOMeasured {
		t.Errorf("completeness: %+v / %+v", r.Log[0], r.Log[3])
	}
	o := r.Objectives[0]
	if o.Asset != "ledger" || o.RTO.WorstSeconds != 3723.6 || o.RTO.WorstDrill != "drill-ledger-2" || o.RTO.LatestSeconds != 252.4 ||
		o.RPO.WorstSeconds != 48.6 || o.RPO.Measurements != 2 || o.RTO.TargetSeconds != 3600 || o.Status != StatusMissed {
		t.Errorf("ledger objectives: %+v", o)
	}
	f := r.Forecasts[0]
	if f.Asset != "ledger" || f.Drill != "drill-ledger-3" || f.ThroughputBps != 50e6 || f.SizeBytes != 20e9 ||
		f.ForecastSeconds != 20e9/50e6+30.2+2.1+20.1 || f.Status != ForecastWithin {
		t.Errorf("ledger forecast: %+v", f)
	}
	// Stable field names: consumers read these.
	var raw map[string]any
	if err := json.Unmarshal([]byte(render(t, "json", in)), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "generated", "host", "policy", "period", "summary", "testing_schedule",
		"test_results", "objectives", "forecasts", "backups", "unscheduled", "untiered"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if _, ok := raw["since"]; ok {
		t.Error("since is set for a report of all records")
	}
	row := raw["test_results"].([]any)[1].(map[string]any)
	if issues, ok := row["issues"].([]any); !ok || len(issues) != 0 {
		t.Errorf("a drill without issues has issues %v, want []", row["issues"])
	}
}

func sameBool(a, b *bool) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

// TestPeriod checks that the header states the period, that nothing older
// reaches the tables, and that "never tested" becomes "not tested since".
func TestPeriod(t *testing.T) {
	in := fixture()
	in.Since = at("2026-11-01T00:00:00Z")
	md := render(t, "md", in)
	if !strings.Contains(md, "- **Period:** since 2026-11-01 00:00:00 UTC, up to 2026-11-21 09:00:00 UTC\n") {
		t.Errorf("header does not state the period:\n%s", md[:400])
	}
	// The caller filters drills, but one that slips through must not
	// contradict the header.
	log := parseTable(t, md, "DR Test Results Log")
	if len(log)-1 != 4 {
		t.Errorf("log holds %d drills since 2026-11-01, want 4", len(log)-1)
	}
	if strings.Contains(md, "2026-10-01 02:00:05") || strings.Contains(md, "oldapp") {
		t.Error("a drill from before the period is in the report")
	}
	if got := column(t, parseTable(t, md, "Backup Testing Schedule"), "Result")["uploads"]; got != "**not tested since 2026-11-01 00:00:00 UTC**" {
		t.Errorf("uploads result = %q", got)
	}
	if got := column(t, parseTable(t, md, "Backups"), "Runs")["ledger"]; got != "4" {
		t.Errorf("ledger runs since 2026-11-01 = %q, want 4", got)
	}
	// Now the worst RTO is the 4m 12s drill: met.
	if got := column(t, parseTable(t, md, "Objectives"), "Result")["ledger"]; got != "met" {
		t.Errorf("ledger objectives in November = %q", got)
	}
	var r Report
	if err := json.Unmarshal([]byte(render(t, "json", in)), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Since.Equal(in.Since) || !strings.HasPrefix(r.Period, "since 2026-11-01") {
		t.Errorf("json period: %v %q", r.Since, r.Period)
	}
	if !strings.Contains(render(t, "html", in), "<dt>Period</dt><dd>since 2026-11-01 00:00:00 UTC, up to 2026-11-21 09:00:00 UTC</dd>") {
		t.Error("html header does not state the period")
	}
}

// hostile is a fixture whose names and messages try to break out of
// Markdown tables and HTML.
func hostile() Input {
	in := fixture()
	const name = `<script>alert("x")</script>|*x*`
	in.Policy.Assets[0].Name = name
	for _, d := range in.Drills {
		if d.Asset == "ledger" {
			d.Asset = name
		}
	}
	in.Drills[0].Issues = []string{"<img src=x onerror=alert(1)> | [link](http://evil) `code`\nsecond line & &amp;"}
	return in
}

func TestMarkdownEscapes(t *testing.T) {
	md := render(t, "md", hostile())
	// CommonMark reads a backslash-escaped < as text; an unescaped one
	// could open a tag.
	for i := range len(md) {
		if md[i] == '<' && (i == 0 || md[i-1] != '\\') {
			t.Fatalf("markdown has an unescaped <: %q", md[max(0, i-30):min(len(md), i+30)])
		}
	}
	rows := parseTable(t, md, "DR Test Results Log") // fails when a pipe split a row
	issues := column(t, rows, "Issues found")["2026-11-20 03:00:02 UTC"]
	if want := "**<img src=x onerror=alert(1)> | [link](http://evil) `code` second line & &amp;**"; issues != want {
		t.Errorf("issues cell = %q, want %q", issues, want)
	}
	if got := column(t, rows, "Asset")["2026-11-20 03:00:02 UTC"]; got != `<script>alert("x")</script>|*x*` {
		t.Errorf("asset cell = %q", got)
	}
}

func TestHTMLEscapesAndIsWellFormed(t *testing.T) {
	for name, in := range map[string]Input{"fixture": fixture(), "hostile": hostile()} {
		t.Run(name, func(t *testing.T) {
			page := render(t, "html", in)
			text := checkHTML(t, page)
			if name == "hostile" {
				if strings.Contains(page, "<script") || strings.Contains(page, "<img") {
					t.Error("a hostile name or issue came through as markup")
				}
				for _, want := range []string{`<script>alert("x")</script>|*x*`, "<img src=x onerror=alert(1)> | [link](http://evil) `code`\nsecond line & &amp;"} {
					if !strings.Contains(text, want) {
						t.Errorf("the page's text lacks %q", want)
					}
				}
			}
		})
	}
}

// checkHTML parses page as XML (the page closes every element, so a
// strict parser finds any unbalanced tag or broken escape), checks it
// loads nothing from elsewhere and runs no script, and returns its text.
func checkHTML(t *testing.T, page string) string {
	t.Helper()
	if !strings.HasPrefix(page, "<!DOCTYPE html>\n") {
		t.Error("no doctype")
	}
	dec := xml.NewDecoder(strings.NewReader(page))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	var stack []string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("page is not well-formed: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch tok.Name.Local {
			case "script", "link", "img", "iframe", "object", "embed", "base":
				t.Errorf("page has a <%s> element", tok.Name.Local)
			}
			for _, a := range tok.Attr {
				if a.Name.Local == "src" || a.Name.Local == "href" || strings.HasPrefix(a.Name.Local, "on") {
					t.Errorf("<%s> has attribute %s=%q", tok.Name.Local, a.Name.Local, a.Value)
				}
			}
			stack = append(stack, tok.Name.Local)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if slices.Contains(stack, "style") && strings.Contains(string(tok), "url(") {
				t.Error("the style sheet loads a URL")
			}
			text.Write(tok)
		}
	}
	if len(stack) != 0 {
		t.Errorf("unclosed elements: %v", stack)
	}
	return text.String()
}

func TestUnknownFormat(t *testing.T) {
	var buf bytes.Buffer
	err := Render(&buf, "pdf", fixture())
	if err == nil {
		t.Fatal("format pdf rendered")
	}
	for _, f := range Formats {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not name format %s", err, f)
		}
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %d bytes for an unknown format", buf.Len())
	}
}

// TestEmpty renders a report with no policy and no records: every table
// says it is empty rather than failing.
func TestEmpty(t *testing.T) {
	in := Input{Generated: at("2026-11-21T09:00:00Z")}
	for _, f := range Formats {
		out := render(t, f, in)
		if f == "html" {
			checkHTML(t, out)
		}
		if f == "md" && !strings.Contains(out, "_No drill in the period._") {
			t.Errorf("empty md report:\n%s", out)
		}
	}
}

// TestForecastFromFailedDrill checks that a drill which failed its checks
// and its RTO but completed the restore still sets the throughput: the
// forecast must not fall back on an older, faster drill.
func TestForecastFromFailedDrill(t *testing.T) {
	in := fixture()
	in.Drills = slices.DeleteFunc(in.Drills, func(d *evidence.DrillReport) bool {
		return d.ID == "drill-ledger-4" || d.ID == "drill-ledger-3"
	})
	md := render(t, "md", in)
	// 9 GB in 3000 s + 600 s is 2.5 MB/s (2.4 MiB/s); 20 GB at that rate is 8000 s,
	// plus 100 + 3.5 + 20.1 s of other phases: 8123.6 s.
	fc := parseTable(t, md, "Restore throughput and forecast")
	for col, want := range map[string]string{
		"Drill": "**2026-10-01 02:00:05 UTC (FAIL)**", "Throughput": "2.4 MiB/s", "Other phases": "123.6 s",
		"Forecast RTO": "**2h 15m 24s**", "RTO target": "1h 0m 0s", "Forecast vs target": "**exceeds target**",
	} {
		if got := column(t, fc, col)["ledger"]; got != want {
			t.Errorf("forecast %s of ledger = %q, want %q", col, got, want)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	if err := Render(failWriter{}, "md", fixture()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("Render to a failing writer: %v", err)
	}
}

// TestAbortedDrillCountsAsNeither: a drill an operator stopped is in the
// log as aborted, and neither fails the asset nor stands as its newest.
func TestAbortedDrillCountsAsNeither(t *testing.T) {
	t.Parallel()
	in := fixture()
	before := Build(in)
	in.Drills = append(in.Drills, &evidence.DrillReport{
		Version: 1, ID: "drill-uploads-stopped", Asset: "uploads", Kind: "files", Tier: "standard", Repository: "primary",
		Host: "db1", Trigger: "schedule", Point: "latest", Started: at("2026-11-29T05:00:00Z"), Ended: at("2026-11-29T05:00:09Z"),
		Aborted: true, Error: "drill drill-uploads-stopped of uploads was stopped before it finished: context canceled",
	})
	after := Build(in)
	if after.Summary.Drills != before.Summary.Drills+1 || after.Summary.Aborted != 1 || after.Summary.Failed != before.Summary.Failed ||
		after.Summary.Passed != before.Summary.Passed || fmt.Sprint(after.Summary.FailedLast) != fmt.Sprint(before.Summary.FailedLast) {
		t.Fatalf("summary with an aborted drill: %+v, before %+v", after.Summary, before.Summary)
	}
	for i, row := range after.Schedule {
		if row.Asset == "uploads" && (row.LastDrill != before.Schedule[i].LastDrill || row.Result != before.Schedule[i].Result) {
			t.Fatalf("the aborted drill changed the schedule row: %+v, before %+v", row, before.Schedule[i])
		}
	}
	md := render(t, "md", in)
	if !strings.Contains(md, "1 stopped before they finished") || !strings.Contains(md, "ABORTED") {
		t.Fatalf("report does not show the aborted drill:\n%s", md)
	}
}
