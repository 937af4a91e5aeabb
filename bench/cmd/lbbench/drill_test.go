package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestLifeboatPolicyDrill reads the -drill policy with Lifeboat's own
// parser: a state directory in the bench root (the catalog the drill
// records into), the tier whose RPO is the 60 s, and a drill with
// the validation query.
func TestLifeboatPolicyDrill(t *testing.T) {
	dir := t.TempDir()
	h := s3Harness(dir)
	h.minio, h.cfg.storage, h.cfg.drill.enabled = nil, storageFS, true
	path := filepath.Join(dir, "lifeboat.yaml")
	text := h.lifeboatPolicy()
	p, err := policy.Parse([]byte(text), path, app.Kinds().Decoders())
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if p.StateDir != filepath.Join(dir, "lb-state") {
		t.Errorf("state_dir %q", p.StateDir)
	}
	tier, ok := p.Tiers[drillTier]
	if !ok || time.Duration(tier.RPO) != time.Minute || time.Duration(tier.RTO) != time.Hour {
		t.Errorf("tiers %+v", p.Tiers)
	}
	a, err := p.Asset(stanza)
	if err != nil {
		t.Fatal(err)
	}
	if a.Tier != drillTier || a.Drill == nil || a.Drill.Point != policy.DrillRandom || len(a.Drill.Checks) != 1 {
		t.Fatalf("asset %+v drill %+v", a, a.Drill)
	}
	if c := a.Drill.Checks[0]; c.Name != drillCheckName || c.SQL != drillCheckSQL || c.Expect.Kind != policy.ExpectTrue {
		t.Errorf("check %+v", c)
	}
	spec := h.lifeboatSpec()
	if !slices.Contains(spec.wipe, filepath.Join(dir, "lb-state")) || !slices.Contains(spec.mkdirs, filepath.Join(dir, "lb-state")) {
		t.Errorf("wipe %v mkdirs %v: the state directory must start empty and exist", spec.wipe, spec.mkdirs)
	}
	if slices.Contains(spec.full, "--no-copy") || slices.Contains(spec.wipe, filepath.Join(dir, "lb-copy")) {
		t.Errorf("-drill without -copy has copy settings: full %v wipe %v", spec.full, spec.wipe)
	}

	// Without -drill the policy has no tier and no drill.
	h.cfg.drill.enabled = false
	if text := h.lifeboatPolicy(); strings.Contains(text, "tier") || strings.Contains(text, "drill") || strings.Contains(text, "state_dir") {
		t.Errorf("policy without -drill:\n%s", text)
	}
}

func TestParseFlagsDrill(t *testing.T) {
	cfg, err := parseFlags([]string{"-drill", "-root", "/var/tmp/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.drill
	if !d.enabled || !slices.Equal(d.parts, []string{"rto", "rpo"}) || d.runs != 5 || d.rpoDrills != 5 ||
		d.archiveTimeout != time.Minute || d.rpoRate != 0 {
		t.Errorf("defaults %+v", d)
	}
	if !slices.Equal(cfg.tools, []string{toolLifeboat}) || cfg.jsonOut != "/var/tmp/x/results-drill.json" {
		t.Errorf("tools %v json %s", cfg.tools, cfg.jsonOut)
	}
	cfg, err = parseFlags([]string{"-drill", "-drill-parts", "rpo", "-rpo-drills", "3", "-archive-timeout", "30s"}, io.Discard)
	if err != nil || !slices.Equal(cfg.drill.parts, []string{"rpo"}) || cfg.drill.rpoDrills != 3 || cfg.drill.archiveTimeout != 30*time.Second {
		t.Errorf("parts rpo: %+v, %v", cfg.drill, err)
	}
	for _, args := range [][]string{
		{"-drill", "-tools", "lifeboat"},
		{"-drill", "-runs", "3"},
		{"-drill", "-copy"},
		{"-drill", "-drill-parts", "rto,latency"},
		{"-drill", "-drill-parts", ","},
		{"-drill", "-drill-runs", "0"},
		{"-drill", "-archive-timeout", "1500ms"},
		{"-drill", "-rpo-spacing", "-1s"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	// Without -drill the drill flags change nothing.
	if cfg, err := parseFlags([]string{"-runs", "2"}, io.Discard); err != nil || cfg.drill.enabled || len(cfg.tools) != 2 {
		t.Errorf("no -drill: %+v %v", cfg, err)
	}
}

func TestLastCommitTime(t *testing.T) {
	out := `rmgr: Transaction len (rec/tot):     34/    34, tx:   10451208, lsn: 5/2C0001A0, prev 5/2C000158, desc: COMMIT 2026-11-23 16:31:00.118223 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:   10451210, lsn: 5/2C000460, prev 5/2C000418, desc: COMMIT 2026-11-23 16:31:02.5 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:   10451209, lsn: 5/2C000520, prev 5/2C0004D8, desc: COMMIT 2026-11-23 16:31:01.000001 UTC
rmgr: Transaction len (rec/tot):     38/    38, tx:          0, lsn: 5/2C000600, prev 5/2C0005C0, desc: RUNNING_XACTS nextXid 10451211
`
	want := time.Date(2026, 11, 23, 16, 31, 2, 500_000_000, time.UTC)
	if got := lastCommitTime(out); !got.Equal(want) {
		t.Errorf("lastCommitTime = %v, want %v", got, want)
	}
	if got := lastCommitTime("pg_waldump: error: could not find a valid record\n"); !got.IsZero() {
		t.Errorf("no commit: %v", got)
	}
}

func TestParseEpoch(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1763915460.123456": time.Unix(1763915460, 123_456_000).UTC(),
		"1763915460":        time.Unix(1763915460, 0).UTC(),
		"1763915460.5":      time.Unix(1763915460, 500_000_000).UTC(),
	} {
		if got, err := parseEpoch(in); err != nil || !got.Equal(want) {
			t.Errorf("parseEpoch(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := parseEpoch("x.1"); err == nil {
		t.Error("parseEpoch(x.1) accepted")
	}
}

func TestLogLineTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg.log")
	log := `2026-11-23 16:31:00.118 UTC [123] LOG:  starting point-in-time recovery to 2026-11-23 16:30:58.1+00
2026-11-23 16:31:04.250 UTC [123] LOG:  redo done at 5/2C000600 system usage: CPU: user: 1.00 s
2026-11-23 16:31:05.000 UTC [123] LOG:  redo done at 5/2C000700
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, ok := pgbin.LogTime(path, "redo done at")
	if want := time.Date(2026, 11, 23, 16, 31, 4, 250_000_000, time.UTC); !ok || !got.Equal(want) {
		t.Errorf("pgbin.LogTime = %v, %v; want %v", got, ok, want)
	}
	if _, ok := pgbin.LogTime(path, "database system is ready"); ok {
		t.Error("found a marker that is not there")
	}
}

func TestDrillTargets(t *testing.T) {
	cfg := config{drill: drillConfig{enabled: true, parts: []string{drillPartRTO, drillPartRPO}}}
	rep := func(rto float64) *evidence.DrillReport { return &evidence.DrillReport{RTOSeconds: rto, Passed: true} }
	res := &drillResults{RTO: []rtoRun{
		{Run: 1, Drill: drillRun{Report: rep(30)}, Bare: bareRun{OK: true, TotalSeconds: 20}, Ratio: 1.5},
		{Run: 2, Drill: drillRun{Report: rep(24)}, Bare: bareRun{OK: true, TotalSeconds: 22}, Ratio: 24.0 / 22},
		{Run: 3, Drill: drillRun{Report: rep(26)}, Bare: bareRun{OK: true, TotalSeconds: 21}, Ratio: 26.0 / 21},
		{Run: 4, Drill: drillRun{Error: "boom"}}, // no pair: left out
	}}
	target := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	latest := func(rpo, bound float64) rpoDrill {
		r := &evidence.DrillReport{Target: target, Recovered: target.Add(-time.Duration(rpo * float64(time.Second))), RPOSeconds: rpo, Passed: true}
		return rpoDrill{Drill: drillRun{Report: r}, ArchivedLastCommit: target.Add(-time.Duration(bound * float64(time.Second))), ArchiveRPOSeconds: bound}
	}
	res.RPO = &rpoResult{ArchiveTimeoutSeconds: 60, PgbenchClients: 4, Drills: []rpoDrill{latest(0, 2), latest(3, 5), latest(1, 61)}}
	got := drillTargets(res, cfg)
	if len(got) != 3 {
		t.Fatalf("%d lines: %+v", len(got), got)
	}
	rto := got[0]
	if !rto.Measured || rto.Value != 26 || rto.Reference != 21 || rto.Pass || !strings.Contains(rto.Text, "FAIL") {
		t.Errorf("RTO line %+v", rto)
	}
	if rpo := got[1]; !rpo.Measured || rpo.Value != 3 || rpo.Reference != 1 || !rpo.Pass || !strings.Contains(rpo.Text, "-N -c 4,") {
		t.Errorf("RPO line %+v", rpo)
	}
	if b := got[2]; !b.Measured || b.Value != 61 || b.Reference != 5 || b.Pass {
		t.Errorf("archive bound line %+v", b)
	}

	// The RTO target passes at 1.2 and below.
	res.RTO = res.RTO[1:2]
	if l := drillTargets(res, cfg)[0]; !l.Pass || l.Ratio > drillRTORatioTarget {
		t.Errorf("ratio %.3f: %+v", 24.0/22, l)
	}
	// A drill that replayed commits made after its own start reports 0:
	// not a measurement.
	res.RPO.Drills[0].RecoveredAfterTargetSeconds = 65.5
	if l := drillTargets(res, cfg)[1]; l.Measured || l.Pass || !strings.Contains(l.Text, "INVALID: 1 of them replayed commits made up to 65.5 s") {
		t.Errorf("late drill: %+v", l)
	}
	res.RPO.Drills[0].RecoveredAfterTargetSeconds = -2
	// A drill that did not recover is not an RPO of zero.
	res.RPO.Drills = append(res.RPO.Drills, rpoDrill{Drill: drillRun{Error: "boom"}})
	if l := drillTargets(res, cfg)[1]; l.Pass || !strings.Contains(l.Text, "over 3 of 4 drills") {
		t.Errorf("failed drill: %+v", l)
	}
}
