// Package metrics exposes what the daemon knows about recoverability as
// Prometheus metrics: when each asset was last backed up and how that run
// went, how far WAL archiving and the copy repositories lag, what the last
// restore drill measured against the tier's objectives, and which health
// checks fail. docs/metrics.md lists every series; docs/monitoring/ holds
// alerting rules and a Grafana dashboard built on them.
//
// The series live in a private registry (with the Go runtime and process
// collectors), never the global one, so that a test or a second daemon in
// one process sees only its own numbers.
//
// Every value is a gauge set from what the daemon records, except
// lifeboat_backup_runs_total. Gauges that hold "the last X" only move
// forward in time: recording an older run or drill than the one shown
// changes nothing, so the daemon may seed them from the catalog at start
// (SeedRun, RecordDrill) in any order.
package metrics

import (
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// namespace prefixes every series this package defines.
const namespace = "lifeboat"

// Run results, as the catalog records them. Every run of an asset ends in
// one of these; lifeboat_backup_runs_total and
// lifeboat_backup_last_run_result carry one series per result so that a
// first failure shows as an increase from 0, not as a new series that
// rate() cannot see.
var results = []string{"ok", "failed", "aborted", "skipped"}

// resultOK is the result of a run that stored a snapshot.
const resultOK = "ok"

// Label names.
const (
	labelAsset      = "asset"
	labelKind       = "kind"
	labelResult     = "result"
	labelRepository = "repository"
	labelCheck      = "check"
	labelPhase      = "phase"
)

// Metrics holds the daemon's series. Its methods are safe for concurrent
// use.
type Metrics struct {
	reg *prometheus.Registry

	// mu orders updates of the "last" gauges with the state below, so
	// that a run recorded concurrently with a seed or a Forget cannot
	// leave a gauge and its state disagreeing.
	mu     sync.Mutex
	runs   map[assetKind]*runState
	drills map[string]*drillState

	backupLastSuccess  *prometheus.GaugeVec
	backupLastRun      *prometheus.GaugeVec
	backupLastResult   *prometheus.GaugeVec
	backupDuration     *prometheus.GaugeVec
	backupBytes        *prometheus.GaugeVec
	backupStoredBytes  *prometheus.GaugeVec
	backupRuns         *prometheus.CounterVec
	walLag             *prometheus.GaugeVec
	copyLagWAL         *prometheus.GaugeVec
	copyLagSnapshots   *prometheus.GaugeVec
	copyLagOldest      *prometheus.GaugeVec
	drillLast          *prometheus.GaugeVec
	drillLastSuccess   *prometheus.GaugeVec
	drillPassed        *prometheus.GaugeVec
	drillRTO           *prometheus.GaugeVec
	drillRPO           *prometheus.GaugeVec
	drillRTOTarget     *prometheus.GaugeVec
	drillRPOTarget     *prometheus.GaugeVec
	drillPhase         *prometheus.GaugeVec
	checkFailing       *prometheus.GaugeVec
	checkLastRun       *prometheus.GaugeVec
	assetVecs, copyVec []*prometheus.MetricVec
}

type assetKind struct{ asset, kind string }

// runState is what the backup gauges of one asset and kind show, so that
// an older run cannot overwrite a newer one.
type runState struct {
	lastRun, lastSuccess time.Time
}

// drillState is the same for the drill gauges of one asset.
type drillState struct {
	last, lastSuccess time.Time
}

// New returns an empty set of series in a registry of its own.
func New() *Metrics {
	m := &Metrics{
		reg:    prometheus.NewRegistry(),
		runs:   map[assetKind]*runState{},
		drills: map[string]*drillState{},
	}
	ak := []string{labelAsset, labelKind}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
		m.reg.MustRegister(g)
		m.assetVecs = append(m.assetVecs, g.MetricVec)
		return g
	}
	m.backupLastSuccess = gauge("backup_last_success_timestamp_seconds",
		"When the last successful backup of the asset ended, in seconds since the Unix epoch.", ak...)
	m.backupLastRun = gauge("backup_last_run_timestamp_seconds",
		"When the last backup run of the asset ended, whatever its result, in seconds since the Unix epoch.", ak...)
	m.backupLastResult = gauge("backup_last_run_result",
		"1 for the result the last backup run of the asset ended with (ok, failed, aborted, skipped), 0 for the others.",
		labelAsset, labelKind, labelResult)
	m.backupDuration = gauge("backup_last_success_duration_seconds",
		"How long the last successful backup of the asset took.", ak...)
	m.backupBytes = gauge("backup_last_success_bytes",
		"Size of what the last successful backup of the asset restores.", ak...)
	m.backupStoredBytes = gauge("backup_last_success_stored_bytes",
		"Bytes the last successful backup of the asset added to the repository, after deduplication and compression.", ak...)
	m.backupRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "backup_runs_total",
		Help: "Backup runs of the asset that ended, by result (ok, failed, aborted, skipped), since the daemon started."},
		[]string{labelAsset, labelKind, labelResult})
	m.reg.MustRegister(m.backupRuns)
	m.assetVecs = append(m.assetVecs, m.backupRuns.MetricVec)

	m.walLag = gauge("wal_archive_lag_seconds",
		"Age of the newest WAL the asset's repository holds: how much committed data a loss of the server now would lose.",
		labelAsset)

	ar := []string{labelAsset, labelRepository}
	m.copyLagWAL = gauge("copy_lag_wal_files",
		"WAL files of the asset stored in its primary repository and not yet in this copy repository.", ar...)
	m.copyLagSnapshots = gauge("copy_lag_snapshots",
		"Snapshots of the asset stored in its primary repository and not yet in this copy repository.", ar...)
	m.copyLagOldest = gauge("copy_lag_oldest_seconds",
		"Age of the oldest WAL file or snapshot of the asset still waiting to reach this copy repository; 0 when caught up.", ar...)
	m.copyVec = []*prometheus.MetricVec{m.copyLagWAL.MetricVec, m.copyLagSnapshots.MetricVec, m.copyLagOldest.MetricVec}

	m.drillLast = gauge("drill_last_timestamp_seconds",
		"When the last restore drill of the asset ended, passed or not, in seconds since the Unix epoch.", labelAsset)
	m.drillLastSuccess = gauge("drill_last_success_timestamp_seconds",
		"When the last passing restore drill of the asset ended, in seconds since the Unix epoch.", labelAsset)
	m.drillPassed = gauge("drill_last_passed",
		"1 when the last restore drill of the asset passed, 0 when it failed.", labelAsset)
	m.drillRTO = gauge("drill_rto_seconds",
		"Recovery time the last drill of the asset measured (all phases, checks included); absent when that drill failed before measuring it.",
		labelAsset)
	m.drillRPO = gauge("drill_rpo_seconds",
		"Recovery point the last drill of the asset measured: how far the newest recovered transaction lay behind the target; absent when that drill failed before measuring it.",
		labelAsset)
	m.drillRTOTarget = gauge("drill_rto_target_seconds",
		"Recovery time objective of the asset's tier, as the last drill compared against; absent when the asset has no tier.",
		labelAsset)
	m.drillRPOTarget = gauge("drill_rpo_target_seconds",
		"Recovery point objective of the asset's tier, as the last drill compared against; absent when the asset has no tier.",
		labelAsset)
	m.drillPhase = gauge("drill_phase_seconds",
		"Time the last drill of the asset spent in each phase (fetch, write, wal_replay, start, checks).",
		labelAsset, labelPhase)

	m.checkFailing = gauge("check_failing",
		"1 while the health check item fails for the asset (backup, wal_lag, copy:REPOSITORY, drill, verify, ...), 0 when it passed at the last check.",
		labelAsset, labelCheck)
	// A vector without labels, so that the series is absent until the
	// first check rather than a 0 that reads as 1970.
	m.checkLastRun = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: "check_last_run_timestamp_seconds",
		Help: "When the daemon last finished the health check of every asset, in seconds since the Unix epoch."}, nil)
	m.reg.MustRegister(m.checkLastRun)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is the registry the series live in, for a caller that adds its
// own collectors or gathers directly.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats (the one
// the scraper asks for). A collector that fails (the process collector
// on a locked-down /proc, say) does not hide the others: they are still
// served. It also counts its scrapes in promhttp_metric_handler_requests_total.
func (m *Metrics) Handler() http.Handler {
	return promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
}

// RecordRun records one backup run that ended: result is "ok", "failed",
// "aborted" or "skipped" (catalog.Result), kind the asset's kind. It counts
// the run in lifeboat_backup_runs_total and, unless a newer run is already
// shown, makes it the asset's last run (and its last success when ok).
func (m *Metrics) RecordRun(asset, kind, result string, start, end time.Time, bytes, bytesStored int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initRuns(asset, kind)
	m.backupRuns.WithLabelValues(asset, kind, result).Inc()
	m.setRun(asset, kind, result, start, end, bytes, bytesStored)
}

// SeedRun is RecordRun without the count: the daemon calls it at start
// with the newest run and the newest successful run of each asset from the
// catalog, so that a restart does not blank the age of the last backup
// (and with it the alert on a missed one). Counters start at 0, as
// Prometheus expects of a restarted process.
func (m *Metrics) SeedRun(asset, kind, result string, start, end time.Time, bytes, bytesStored int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.initRuns(asset, kind)
	m.setRun(asset, kind, result, start, end, bytes, bytesStored)
}

// initRuns creates the asset's run counter for every result at 0.
func (m *Metrics) initRuns(asset, kind string) {
	for _, r := range results {
		m.backupRuns.WithLabelValues(asset, kind, r)
	}
}

// setRun updates the last-run gauges; the caller holds m.mu.
func (m *Metrics) setRun(asset, kind, result string, start, end time.Time, bytes, bytesStored int64) {
	k := assetKind{asset, kind}
	st := m.runs[k]
	if st == nil {
		st = &runState{}
		m.runs[k] = st
	}
	if !end.Before(st.lastRun) {
		st.lastRun = end
		m.backupLastRun.WithLabelValues(asset, kind).Set(unixSeconds(end))
		for _, r := range results {
			m.backupLastResult.WithLabelValues(asset, kind, r).Set(0)
		}
		// An unknown result still shows, rather than the last run
		// appearing to have ended in none.
		m.backupLastResult.WithLabelValues(asset, kind, result).Set(1)
	}
	if result != resultOK || end.Before(st.lastSuccess) {
		return
	}
	st.lastSuccess = end
	m.backupLastSuccess.WithLabelValues(asset, kind).Set(unixSeconds(end))
	// A clock step during the run must not show as a negative duration.
	m.backupDuration.WithLabelValues(asset, kind).Set(max(0, end.Sub(start).Seconds()))
	m.backupBytes.WithLabelValues(asset, kind).Set(float64(bytes))
	m.backupStoredBytes.WithLabelValues(asset, kind).Set(float64(bytesStored))
}

// RecordDrill records one drill that ended. Unless a newer drill of the
// asset is already shown, it becomes the asset's last drill: its result,
// RTO and RPO (dropped when the drill failed before measuring them, rather
// than showing a 0 that would look like a perfect result), the tier's
// targets (dropped when the report has none) and its phase times. It also
// serves to seed the drill gauges from the catalog at start.
func (m *Metrics) RecordDrill(r *evidence.DrillReport) {
	if r == nil || r.Aborted {
		return // an aborted drill, stopped before it finished, passed nothing and failed nothing
	}
	end := r.Ended
	if end.IsZero() {
		end = r.Started
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.drills[r.Asset]
	if st == nil {
		st = &drillState{}
		m.drills[r.Asset] = st
	}
	if r.Passed && !end.Before(st.lastSuccess) {
		st.lastSuccess = end
		m.drillLastSuccess.WithLabelValues(r.Asset).Set(unixSeconds(end))
	}
	if end.Before(st.last) {
		return
	}
	st.last = end
	a := r.Asset
	m.drillLast.WithLabelValues(a).Set(unixSeconds(end))
	m.drillPassed.WithLabelValues(a).Set(boolValue(r.Passed))
	setOrDelete(m.drillRTO, a, r.RTOSeconds, rtoMeasured(r))
	setOrDelete(m.drillRPO, a, r.RPOSeconds, rpoMeasured(r))
	setOrDelete(m.drillRTOTarget, a, r.RTOTargetSeconds, r.RTOTargetSeconds > 0)
	setOrDelete(m.drillRPOTarget, a, r.RPOTargetSeconds, r.RPOTargetSeconds > 0)
	// The phases shown are those of this drill only: a phase an earlier
	// drill went through and this one did not must not linger.
	m.drillPhase.DeletePartialMatch(prometheus.Labels{labelAsset: a})
	for _, p := range r.Phases {
		m.drillPhase.WithLabelValues(a, p.Name).Set(p.Seconds)
	}
}

// rtoMeasured reports whether the drill's RTO is a whole recovery time:
// the drill passed, compared it with a target, or got as far as its checks
// (a failed validation query still ends a complete recovery). A drill that
// stopped at a missing WAL segment measured only part of one.
func rtoMeasured(r *evidence.DrillReport) bool {
	if r.Passed || r.RTOMet != nil {
		return true
	}
	return slices.ContainsFunc(r.Phases, func(p evidence.Phase) bool { return p.Name == evidence.PhaseChecks })
}

// rpoMeasured reports whether the drill found the newest transaction it
// recovered, which RPO is measured from.
func rpoMeasured(r *evidence.DrillReport) bool {
	return r.Passed || r.RPOMet != nil || !r.Recovered.IsZero()
}

// SetWALLag sets the WAL archive lag of a PostgreSQL asset in seconds.
func (m *Metrics) SetWALLag(asset string, seconds float64) {
	m.walLag.WithLabelValues(asset).Set(seconds)
}

// SetCopyLag sets how far a copy repository is behind the asset's primary
// repository: WAL files and snapshots not yet copied, and the age of the
// oldest of them (0 when caught up).
func (m *Metrics) SetCopyLag(asset, repository string, walFiles, snapshots int, oldestSeconds float64) {
	m.copyLagWAL.WithLabelValues(asset, repository).Set(float64(walFiles))
	m.copyLagSnapshots.WithLabelValues(asset, repository).Set(float64(snapshots))
	m.copyLagOldest.WithLabelValues(asset, repository).Set(oldestSeconds)
}

// ForgetCopy removes the copy lag series of one asset and repository, for
// a repository the asset is no longer copied to after a reload.
func (m *Metrics) ForgetCopy(asset, repository string) {
	for _, v := range m.copyVec {
		v.DeletePartialMatch(prometheus.Labels{labelAsset: asset, labelRepository: repository})
	}
}

// SetCheck records the outcome of one health check item of an asset:
// failing sets lifeboat_check_failing to 1, false clears it to 0 (the
// series stays, showing the item was checked and passed).
func (m *Metrics) SetCheck(asset, check string, failing bool) {
	m.checkFailing.WithLabelValues(asset, check).Set(boolValue(failing))
}

// CheckRan records when a round of health checks finished, so that a check
// loop that stopped running shows (its alerts would otherwise freeze in
// their last state).
func (m *Metrics) CheckRan(t time.Time) {
	m.checkLastRun.WithLabelValues().Set(unixSeconds(t))
}

// Forget removes every series of an asset no longer in the policy (after a
// reload), so that its last state stops raising alerts. Call it as well
// when an asset's kind changes, since kind is a label of its backup series.
func (m *Metrics) Forget(asset string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.assetVecs {
		v.DeletePartialMatch(prometheus.Labels{labelAsset: asset})
	}
	for k := range m.runs {
		if k.asset == asset {
			delete(m.runs, k)
		}
	}
	delete(m.drills, asset)
}

// setOrDelete sets the asset's series of v to value when ok, and removes it
// otherwise, so that an unknown value is absent rather than 0.
func setOrDelete(v *prometheus.GaugeVec, asset string, value float64, ok bool) {
	if ok {
		v.WithLabelValues(asset).Set(value)
		return
	}
	v.DeleteLabelValues(asset)
}

// unixSeconds is t as Prometheus timestamps are written: seconds since the
// epoch, with the fraction.
func unixSeconds(t time.Time) float64 {
	// Not UnixNano, which overflows for times before 1678.
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
