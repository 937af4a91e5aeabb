package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// t0 is an arbitrary fixed moment the tests count from.
var t0 = time.Date(2024, 5, 6, 3, 30, 0, 250_000_000, time.UTC)

// scrape fetches url as Prometheus does and returns every lifeboat_ sample
// keyed by its name and sorted labels, e.g. `lifeboat_x{asset="a",kind="b"}`.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	fams := scrapeFamilies(t, url)
	got := map[string]float64{}
	for name, f := range fams {
		if !strings.HasPrefix(name, namespace+"_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var v float64
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				v = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				v = m.GetCounter().GetValue()
			default:
				t.Fatalf("%s: unexpected type %s", name, f.GetType())
			}
			got[seriesKey(name, m.GetLabel())] = v
		}
	}
	return got
}

func scrapeFamilies(t testing.TB, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: content type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

func seriesKey(name string, labels []*dto.LabelPair) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// serve starts m's handler on a test server and returns its /metrics URL.
func serve(t testing.TB, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// expect checks that every series in want has exactly its value, and that
// every series named in absent is missing.
func expect(t testing.TB, got map[string]float64, want map[string]float64, absent ...string) {
	t.Helper()
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s missing", k)
			continue
		}
		if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	for _, k := range absent {
		if _, ok := got[k]; ok {
			t.Errorf("%s = %v, want it absent", k, got[k])
		}
	}
}

// only checks that the series of family name are exactly want.
func only(t testing.TB, got map[string]float64, name string, want map[string]float64) {
	t.Helper()
	for k, v := range got {
		if strings.HasPrefix(k, name+"{") {
			if w, ok := want[k]; !ok || w != v {
				t.Errorf("unexpected %s = %v", k, v)
			}
		}
	}
	expect(t, got, want)
}

// ts is t in seconds since the epoch, as the exposition should carry it.
func ts(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

func TestTimestampSeconds(t *testing.T) {
	// 2024-05-06T03:30:00.25Z, as date +%s.%N gives it.
	if got := unixSeconds(t0); got != 1714966200.25 {
		t.Errorf("unixSeconds(%v) = %v", t0, got)
	}
	if got := unixSeconds(time.Time{}); got != -62135596800 {
		t.Errorf("unixSeconds(zero) = %v", got)
	}
}

func TestBackupSeries(t *testing.T) {
	m := New()
	url := serve(t, m)

	// Before anything is recorded there are no lifeboat series at all:
	// absence, not a 0 timestamp that would read as "1970".
	if got := scrape(t, url); len(got) != 0 {
		t.Fatalf("fresh registry has series: %v", got)
	}

	okEnd := t0.Add(95*time.Second + 500*time.Millisecond)
	m.RecordRun("ledger", "postgres", "ok", t0, okEnd, 10<<30, 123456789)
	failStart := t0.Add(24 * time.Hour)
	failEnd := failStart.Add(7 * time.Second)
	m.RecordRun("ledger", "postgres", "failed", failStart, failEnd, 0, 0)
	m.RecordRun("app", "sqlite", "skipped", t0, t0, 0, 0)

	got := scrape(t, url)
	const l = `{asset="ledger",kind="postgres"}`
	expect(t, got, map[string]float64{
		"lifeboat_backup_last_success_timestamp_seconds" + l: ts(okEnd),
		"lifeboat_backup_last_run_timestamp_seconds" + l:     ts(failEnd),
		"lifeboat_backup_last_success_duration_seconds" + l:  95.5,
		"lifeboat_backup_last_success_bytes" + l:             10 << 30,
		"lifeboat_backup_last_success_stored_bytes" + l:      123456789,
	})
	only(t, got, "lifeboat_backup_last_run_result", map[string]float64{
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="ok"}`:      0,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="failed"}`:  1,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="aborted"}`: 0,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="skipped"}`: 0,
		`lifeboat_backup_last_run_result{asset="app",kind="sqlite",result="ok"}`:           0,
		`lifeboat_backup_last_run_result{asset="app",kind="sqlite",result="failed"}`:       0,
		`lifeboat_backup_last_run_result{asset="app",kind="sqlite",result="aborted"}`:      0,
		`lifeboat_backup_last_run_result{asset="app",kind="sqlite",result="skipped"}`:      1,
	})
	// Every result of a known asset is there from the start, so that
	// increase() sees a first failure.
	only(t, got, "lifeboat_backup_runs_total", map[string]float64{
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="ok"}`:      1,
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="failed"}`:  1,
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="aborted"}`: 0,
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="skipped"}`: 0,
		`lifeboat_backup_runs_total{asset="app",kind="sqlite",result="ok"}`:           0,
		`lifeboat_backup_runs_total{asset="app",kind="sqlite",result="failed"}`:       0,
		`lifeboat_backup_runs_total{asset="app",kind="sqlite",result="aborted"}`:      0,
		`lifeboat_backup_runs_total{asset="app",kind="sqlite",result="skipped"}`:      1,
	})
	// An asset that never succeeded has no success series.
	expect(t, got, nil, `lifeboat_backup_last_success_timestamp_seconds{asset="app",kind="sqlite"}`,
		`lifeboat_backup_last_success_bytes{asset="app",kind="sqlite"}`)

	// An older run (recorded late) is counted but does not move the
	// "last" gauges back.
	m.RecordRun("ledger", "postgres", "ok", t0.Add(-time.Hour), t0.Add(-time.Hour+time.Minute), 1, 1)
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		"lifeboat_backup_last_success_timestamp_seconds" + l:                              ts(okEnd),
		"lifeboat_backup_last_run_timestamp_seconds" + l:                                  ts(failEnd),
		"lifeboat_backup_last_success_bytes" + l:                                          10 << 30,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="failed"}`: 1,
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="ok"}`:          2,
	})

	// A newer success takes over every success gauge.
	end := failEnd.Add(time.Hour)
	m.RecordRun("ledger", "postgres", "ok", end.Add(-30*time.Second), end, 11<<30, 42)
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		"lifeboat_backup_last_success_timestamp_seconds" + l:                              ts(end),
		"lifeboat_backup_last_run_timestamp_seconds" + l:                                  ts(end),
		"lifeboat_backup_last_success_duration_seconds" + l:                               30,
		"lifeboat_backup_last_success_bytes" + l:                                          11 << 30,
		"lifeboat_backup_last_success_stored_bytes" + l:                                   42,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="ok"}`:     1,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="failed"}`: 0,
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="ok"}`:          3,
	})
}

// TestSeedRun: at start the daemon seeds the gauges from the catalog (the
// newest run and the newest success, in either order) without counting.
func TestSeedRun(t *testing.T) {
	m := New()
	url := serve(t, m)
	okEnd := t0.Add(time.Minute)
	abortEnd := t0.Add(25 * time.Hour)
	m.SeedRun("ledger", "postgres", "aborted", t0.Add(24*time.Hour), abortEnd, 0, 0)
	m.SeedRun("ledger", "postgres", "ok", t0, okEnd, 500, 50)
	got := scrape(t, url)
	const l = `{asset="ledger",kind="postgres"}`
	expect(t, got, map[string]float64{
		"lifeboat_backup_last_success_timestamp_seconds" + l:                               ts(okEnd),
		"lifeboat_backup_last_run_timestamp_seconds" + l:                                   ts(abortEnd),
		"lifeboat_backup_last_success_duration_seconds" + l:                                60,
		"lifeboat_backup_last_success_bytes" + l:                                           500,
		"lifeboat_backup_last_success_stored_bytes" + l:                                    50,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="aborted"}`: 1,
		`lifeboat_backup_last_run_result{asset="ledger",kind="postgres",result="ok"}`:      0,
	})
	for _, r := range results {
		k := `lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="` + r + `"}`
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (present %v), want 0", k, v, ok)
		}
	}
}

func passingDrill() *evidence.DrillReport {
	yes := true
	return &evidence.DrillReport{
		Version: evidence.Version, ID: "d1", Asset: "ledger", Kind: "postgres", Tier: "critical",
		Repository: "primary", Point: "random",
		Started: t0, Ended: t0.Add(10 * time.Minute),
		Phases: []evidence.Phase{
			{Name: evidence.PhaseFetch, Seconds: 120.5},
			{Name: evidence.PhaseWrite, Seconds: 200},
			{Name: evidence.PhaseReplay, Seconds: 90.25},
			{Name: evidence.PhaseStart, Seconds: 3},
			{Name: evidence.PhaseChecks, Seconds: 30},
		},
		RTOSeconds: 443.75, Recovered: t0.Add(-time.Hour), RPOSeconds: 12,
		RTOTargetSeconds: 3600, RPOTargetSeconds: 300, RTOMet: &yes, RPOMet: &yes,
		Passed: true,
	}
}

func TestDrillSeries(t *testing.T) {
	m := New()
	url := serve(t, m)
	d := passingDrill()
	m.RecordDrill(d)
	got := scrape(t, url)
	const l = `{asset="ledger"}`
	expect(t, got, map[string]float64{
		"lifeboat_drill_last_timestamp_seconds" + l:         ts(d.Ended),
		"lifeboat_drill_last_success_timestamp_seconds" + l: ts(d.Ended),
		"lifeboat_drill_last_passed" + l:                    1,
		"lifeboat_drill_rto_seconds" + l:                    443.75,
		"lifeboat_drill_rpo_seconds" + l:                    12,
		"lifeboat_drill_rto_target_seconds" + l:             3600,
		"lifeboat_drill_rpo_target_seconds" + l:             300,
	})
	only(t, got, "lifeboat_drill_phase_seconds", map[string]float64{
		`lifeboat_drill_phase_seconds{asset="ledger",phase="fetch"}`:      120.5,
		`lifeboat_drill_phase_seconds{asset="ledger",phase="write"}`:      200,
		`lifeboat_drill_phase_seconds{asset="ledger",phase="wal_replay"}`: 90.25,
		`lifeboat_drill_phase_seconds{asset="ledger",phase="start"}`:      3,
		`lifeboat_drill_phase_seconds{asset="ledger",phase="checks"}`:     30,
	})

	// A later drill that failed at a missing WAL segment measured neither
	// objective: they vanish rather than read as 0, and so do the phases
	// it never reached. Its tier was dropped meanwhile: no targets.
	f := &evidence.DrillReport{
		Version: evidence.Version, ID: "d2", Asset: "ledger", Kind: "postgres",
		Started: t0.Add(30 * 24 * time.Hour), Ended: t0.Add(30*24*time.Hour + time.Minute),
		Phases:     []evidence.Phase{{Name: evidence.PhaseFetch, Seconds: 60}},
		RTOSeconds: 60,
		Error:      "WAL segment 000000010000000000000007 is missing from repository primary",
	}
	m.RecordDrill(f)
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		"lifeboat_drill_last_timestamp_seconds" + l:         ts(f.Ended),
		"lifeboat_drill_last_success_timestamp_seconds" + l: ts(d.Ended),
		"lifeboat_drill_last_passed" + l:                    0,
	}, "lifeboat_drill_rto_seconds"+l, "lifeboat_drill_rpo_seconds"+l,
		"lifeboat_drill_rto_target_seconds"+l, "lifeboat_drill_rpo_target_seconds"+l)
	only(t, got, "lifeboat_drill_phase_seconds", map[string]float64{
		`lifeboat_drill_phase_seconds{asset="ledger",phase="fetch"}`: 60,
	})

	// Seeding the older passing drill again (as at a daemon start)
	// changes nothing.
	m.RecordDrill(d)
	got2 := scrape(t, url)
	for k, v := range got {
		if got2[k] != v {
			t.Errorf("after an older drill: %s = %v, was %v", k, got2[k], v)
		}
	}

	// A drill that recovered completely but failed a validation query
	// and missed its RTO: both objectives are measured and shown.
	no := false
	q := passingDrill()
	q.Started, q.Ended = t0.Add(60*24*time.Hour), t0.Add(60*24*time.Hour+2*time.Hour)
	q.RTOSeconds, q.RTOMet, q.Passed = 7000, &no, false
	q.Error = `check "ledger has rows": got false, want true`
	m.RecordDrill(q)
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		"lifeboat_drill_last_timestamp_seconds" + l:         ts(q.Ended),
		"lifeboat_drill_last_success_timestamp_seconds" + l: ts(d.Ended),
		"lifeboat_drill_last_passed" + l:                    0,
		"lifeboat_drill_rto_seconds" + l:                    7000,
		"lifeboat_drill_rto_target_seconds" + l:             3600,
		"lifeboat_drill_rpo_seconds" + l:                    12,
		"lifeboat_drill_rpo_target_seconds" + l:             300,
	})
	m.RecordDrill(nil) // a nil report is ignored, not a panic
}

func TestLagAndCheckSeries(t *testing.T) {
	m := New()
	url := serve(t, m)
	m.SetWALLag("ledger", 42.5)
	m.SetCopyLag("ledger", "offsite", 17, 2, 3600.25)
	m.SetCopyLag("ledger", "tape", 0, 0, 0)
	m.SetCheck("ledger", "wal", true)
	m.SetCheck("ledger", "copy", true)
	m.SetCheck("ledger", "copy", false)
	ran := t0.Add(time.Hour)
	m.CheckRan(ran)
	got := scrape(t, url)
	expect(t, got, map[string]float64{
		`lifeboat_wal_archive_lag_seconds{asset="ledger"}`:                      42.5,
		`lifeboat_copy_lag_wal_files{asset="ledger",repository="offsite"}`:      17,
		`lifeboat_copy_lag_snapshots{asset="ledger",repository="offsite"}`:      2,
		`lifeboat_copy_lag_oldest_seconds{asset="ledger",repository="offsite"}`: 3600.25,
		`lifeboat_copy_lag_wal_files{asset="ledger",repository="tape"}`:         0,
		`lifeboat_copy_lag_snapshots{asset="ledger",repository="tape"}`:         0,
		`lifeboat_copy_lag_oldest_seconds{asset="ledger",repository="tape"}`:    0,
		`lifeboat_check_failing{asset="ledger",check="wal"}`:                    1,
		`lifeboat_check_failing{asset="ledger",check="copy"}`:                   0,
		`lifeboat_check_last_run_timestamp_seconds{}`:                           ts(ran),
	})

	m.ForgetCopy("ledger", "tape")
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		`lifeboat_copy_lag_wal_files{asset="ledger",repository="offsite"}`: 17,
	}, `lifeboat_copy_lag_wal_files{asset="ledger",repository="tape"}`,
		`lifeboat_copy_lag_snapshots{asset="ledger",repository="tape"}`,
		`lifeboat_copy_lag_oldest_seconds{asset="ledger",repository="tape"}`)
}

// populate records one of everything for asset, so that every lifeboat_
// family has a series.
func populate(m *Metrics, asset string) {
	m.RecordRun(asset, "postgres", "ok", t0, t0.Add(time.Minute), 100, 10)
	d := passingDrill()
	d.Asset = asset
	m.RecordDrill(d)
	m.SetWALLag(asset, 1)
	m.SetCopyLag(asset, "offsite", 1, 1, 1)
	m.SetCheck(asset, "backup", true)
	m.CheckRan(t0)
}

func TestForget(t *testing.T) {
	m := New()
	url := serve(t, m)
	populate(m, "ledger")
	populate(m, "app")
	before := scrape(t, url)
	m.Forget("ledger")
	got := scrape(t, url)
	for k := range got {
		if strings.Contains(k, `asset="ledger"`) {
			t.Errorf("after Forget: %s still there", k)
		}
	}
	for k, v := range before {
		if !strings.Contains(k, `asset="ledger"`) && got[k] != v {
			t.Errorf("after Forget of another asset: %s = %v, was %v", k, got[k], v)
		}
	}
	// A forgotten asset that comes back starts afresh: even a run older
	// than the one shown before is shown.
	m.RecordRun("ledger", "postgres", "ok", t0.Add(-time.Hour), t0.Add(-time.Hour+time.Second), 1, 1)
	got = scrape(t, url)
	expect(t, got, map[string]float64{
		`lifeboat_backup_last_success_timestamp_seconds{asset="ledger",kind="postgres"}`: ts(t0.Add(-time.Hour + time.Second)),
		`lifeboat_backup_runs_total{asset="ledger",kind="postgres",result="ok"}`:         1,
	})
}

// TestProcessCollectors: the registry carries the Go and process series.
func TestProcessCollectors(t *testing.T) {
	m := New()
	fams := scrapeFamilies(t, serve(t, m))
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds", "process_resident_memory_bytes"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// TestOpenMetrics: a scraper asking for OpenMetrics gets it.
func TestOpenMetrics(t *testing.T) {
	m := New()
	populate(m, "ledger")
	req, err := http.NewRequest("GET", serve(t, m), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("content type %q", ct)
	}
}

// exportedNames is every lifeboat_ family the package exports, found by
// recording one of everything.
func exportedNames(t testing.TB) []string {
	t.Helper()
	m := New()
	populate(m, "a")
	if err := m.WatchFleetLeader(func() bool { return true }); err != nil { // agents of a fleet only
		t.Fatal(err)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), namespace+"_") {
			names = append(names, f.GetName())
		}
	}
	// Guard against populate missing a family, which would make the
	// document checks below pass vacuously.
	if len(names) != len(m.assetVecs)+2 {
		t.Fatalf("populate gave %d families, the package defines %d: %v", len(names), len(m.assetVecs)+2, names)
	}
	slices.Sort(names)
	return names
}

// TestConcurrentUse runs every method at once (go test -race finds what
// this would hide) and takes Handler twice, as a daemon that rebuilds its
// server after a reload would.
func TestConcurrentUse(t *testing.T) {
	m := New()
	url := serve(t, m)
	h2 := httptest.NewServer(m.Handler())
	defer h2.Close()
	done := make(chan struct{})
	for i := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			asset := fmt.Sprintf("a%d", i%2)
			for j := range 200 {
				end := t0.Add(time.Duration(j) * time.Second)
				m.RecordRun(asset, "files", results[j%len(results)], t0, end, 1, 1)
				d := passingDrill()
				d.Asset, d.Ended = asset, end
				m.RecordDrill(d)
				m.SetCheck(asset, "backup", j%2 == 0)
				if j%50 == 0 {
					m.Forget(asset)
				}
			}
		}()
	}
	for range 4 {
		scrape(t, url)
		scrape(t, h2.URL)
		<-done
	}
}
