package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// The -drill mode measures the targets of issue 5 on the reference cluster:
//
//   - RTO: a drill to a random point takes at most 1.2 x a bare
//     `lifeboat restore --to DIR --time T` plus recovery of the same point
//     (pg_ctl start until the promoted server takes connections). Each run
//     is a `lifeboat drill --random-point` followed by the bare restore of
//     the target T its report names: the drill goes first because it picks
//     T. The page cache is dropped before each.
//   - RPO: while pgbench -c 4 runs against the cluster with archive_timeout
//     60 s, `lifeboat drill --latest` several times; each report's
//     rpo_seconds must be at most 60 s.
//
// Drills run as root with the throwaway server as the bench user (--run-as),
// as a scheduled drill of `lifeboat serve` does.

const (
	drillPartRTO = "rto"
	drillPartRPO = "rpo"

	// drillRTORatioTarget: drill RTO <= 1.2 x bare restore + recovery.
	drillRTORatioTarget = 1.2
	// drillRPOTarget is the RPO target in seconds.
	drillRPOTarget = 60.0

	// The policy's tier and validation query for -drill (tools.go).
	drillTier      = "bench"
	drillTierRPO   = "1m"
	drillTierRTO   = "1h"
	drillCheckName = "transactions has rows"
	drillCheckSQL  = "select count(*) >= 1000 from transactions"
)

// drillConfig holds the -drill flags.
type drillConfig struct {
	enabled        bool
	parts          []string
	runs           int
	rpoDrills      int
	rpoWarmup      time.Duration
	rpoSpacing     time.Duration
	archiveTimeout time.Duration
	rpoRate        int
}

// flags registers the -drill flags on fs and returns the unparsed
// -drill-parts value.
func (d *drillConfig) flags(fs *flag.FlagSet) *string {
	fs.BoolVar(&d.enabled, "drill", false, "run the drill benchmark of issue 5 (drill RTO against a bare restore + recovery, RPO of latest drills under pgbench) instead of the tool comparison")
	parts := fs.String("drill-parts", "rto,rpo", "with -drill: the parts to run, rto and/or rpo")
	fs.IntVar(&d.runs, "drill-runs", 5, "with -drill: random-point drills, each followed by a bare restore + recovery of its point")
	fs.IntVar(&d.rpoDrills, "rpo-drills", 5, "with -drill: latest-point drills while pgbench runs")
	fs.DurationVar(&d.rpoWarmup, "rpo-warmup", time.Minute, "with -drill: pgbench time before the first latest drill")
	fs.DurationVar(&d.rpoSpacing, "rpo-spacing", time.Minute, "with -drill: pause between the end of one latest drill and the start of the next")
	fs.DurationVar(&d.archiveTimeout, "archive-timeout", time.Minute, "with -drill: archive_timeout of the reference cluster during the RPO part")
	fs.IntVar(&d.rpoRate, "rpo-pgbench-rate", 0, "with -drill: pgbench -R during the RPO part (0: unthrottled, as the issue says)")
	return parts
}

// checkDrill validates the -drill flags; -drill runs Lifeboat alone.
func (c *config) checkDrill(fs *flag.FlagSet, parts string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range []string{"tools", "order", "runs", "copy"} {
		if set[name] {
			return fmt.Errorf("-drill runs Lifeboat alone and counts its own runs (-drill-runs, -rpo-drills): drop -%s", name)
		}
	}
	c.tools = []string{toolLifeboat}
	d := &c.drill
	d.parts = nil
	for _, p := range strings.Split(parts, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case p != drillPartRTO && p != drillPartRPO:
			return fmt.Errorf("-drill-parts: unknown part %q (want rto, rpo or both)", p)
		case !slices.Contains(d.parts, p):
			d.parts = append(d.parts, p)
		}
	}
	switch {
	case len(d.parts) == 0:
		return errors.New("-drill-parts selects nothing (want rto, rpo or both)")
	case d.runs < 1 || d.rpoDrills < 1:
		return errors.New("-drill-runs and -rpo-drills must be positive")
	case d.rpoWarmup < 0 || d.rpoSpacing < 0 || d.rpoRate < 0:
		return errors.New("-rpo-warmup, -rpo-spacing and -rpo-pgbench-rate must not be negative")
	case d.archiveTimeout < time.Second || d.archiveTimeout%time.Second != 0:
		return errors.New("-archive-timeout must be whole seconds, at least 1s")
	}
	return nil
}

func (d drillConfig) has(part string) bool { return slices.Contains(d.parts, part) }

// String summarises the flags for the results' flags map.
func (d drillConfig) String() string {
	if !d.enabled {
		return "false"
	}
	return fmt.Sprintf("parts=%s runs=%d rpo_drills=%d rpo_warmup=%s rpo_spacing=%s archive_timeout=%s rpo_pgbench_rate=%d",
		strings.Join(d.parts, ","), d.runs, d.rpoDrills, d.rpoWarmup, d.rpoSpacing, d.archiveTimeout, d.rpoRate)
}

// drillResults is what -drill measured.
type drillResults struct {
	Version  string         `json:"lifeboat_version"`
	Parts    []string       `json:"parts"`
	Init     stepResult     `json:"init"`
	Full     stepResult     `json:"full_backup"`
	Workload *drillWorkload `json:"workload,omitempty"` // RTO part: pgbench between the full backup and the drills
	RTO      []rtoRun       `json:"rto_runs,omitempty"`
	RPO      *rpoResult     `json:"rpo,omitempty"`
	Targets  []drillTarget  `json:"targets"`
	Error    string         `json:"error,omitempty"` // what stopped the mode early
}

// drillWorkload is the pgbench window that gives the random points of the
// RTO part WAL to replay.
type drillWorkload struct {
	Pgbench  pgbenchResult  `json:"pgbench"`
	Archiver archiverResult `json:"archiver"`
}

// drillRun is one `lifeboat drill` as the harness ran it.
type drillRun struct {
	Args          []string `json:"args"`
	CachesDropped bool     `json:"caches_dropped"`
	// Started is the harness's clock just before the command started.
	Started     time.Time `json:"started"`
	WallSeconds float64   `json:"wall_seconds"` // the whole command, start to exit
	ExitCode    int       `json:"exit_code"`
	Error       string    `json:"error,omitempty"`
	// Report is the drill's --json output; present whenever the drill ran,
	// passed or not.
	Report *evidence.DrillReport `json:"report,omitempty"`
}

// passed reports whether the drill ran and passed.
func (d drillRun) passed() bool { return d.Report != nil && d.Report.Passed && d.Error == "" }

// bareRun is a bare restore plus recovery of one point, what an operator
// does by hand: `lifeboat restore --to DIR --time T`, then pg_ctl start and
// wait until recovery is over and the server takes connections.
type bareRun struct {
	Target        time.Time `json:"target"`
	CachesDropped bool      `json:"caches_dropped"`
	OK            bool      `json:"ok"`
	Error         string    `json:"error,omitempty"`
	// RestoreSeconds is the restore command; RecoverySeconds pg_ctl start
	// until the promoted server took connections, of which ReplaySeconds
	// ran until the server logged "redo done"; TotalSeconds both, the
	// figure the drill's RTO is compared with.
	RestoreSeconds  float64 `json:"restore_seconds"`
	RecoverySeconds float64 `json:"recovery_seconds"`
	ReplaySeconds   float64 `json:"replay_seconds"`
	TotalSeconds    float64 `json:"total_seconds"`
	// Recovered is pg_last_xact_replay_timestamp() of the promoted server:
	// the same as the drill's when both recovered the same point.
	Recovered time.Time `json:"recovered,omitzero"`
}

// rtoRun pairs a random-point drill with the bare recovery of its point.
type rtoRun struct {
	Run   int      `json:"run"`
	Drill drillRun `json:"drill"`
	Bare  bareRun  `json:"bare"`
	// Ratio is the drill's rto_seconds over the bare total; 0 when either
	// failed.
	Ratio float64 `json:"ratio,omitempty"`
}

// rpoResult is the RPO part: latest drills while pgbench runs.
type rpoResult struct {
	ArchiveTimeoutSeconds float64      `json:"archive_timeout_seconds"`
	PgbenchClients        int          `json:"pgbench_clients"`
	PgbenchRate           int          `json:"pgbench_rate"` // 0: unthrottled
	Incr                  stepResult   `json:"incremental_backup"`
	Seconds               float64      `json:"pgbench_seconds"`
	TPS                   float64      `json:"tps"` // commits of database postgres per second (pg_stat_database)
	PgbenchError          string       `json:"pgbench_error,omitempty"`
	WALPush               walPushStats `json:"wal_push"`
	ArchiveFailures       int64        `json:"archive_failures"` // pg_stat_archiver.failed_count grew by this much
	Drills                []rpoDrill   `json:"drills"`
	Error                 string       `json:"error,omitempty"`
}

// rpoDrill is one latest drill under load, with what the archive held when
// it started: a failure at that moment loses every commit after the newest
// one in the archived WAL, whatever the drill later replays.
type rpoDrill struct {
	Drill drillRun `json:"drill"`
	// ArchiveAtStart is pg_stat_archiver just before the drill started.
	ArchiveAtStart archiverState `json:"archive_at_start"`
	// ArchivedLastCommit is the newest commit in the last WAL segment
	// archived at the drill's start (pg_waldump of the source's copy);
	// ArchiveRPOSeconds is the drill's target (its start) minus it.
	ArchivedLastCommit time.Time `json:"archived_last_commit,omitzero"`
	ArchiveRPOSeconds  float64   `json:"archive_rpo_seconds"`
	ArchiveError       string    `json:"archive_error,omitempty"`
	// RecoveredAfterTargetSeconds is how far after the drill's target the
	// last replayed commit lies (negative: before it).
	RecoveredAfterTargetSeconds float64 `json:"recovered_after_target_seconds"`
}

// drillTarget is one target line of -drill.
type drillTarget struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`
	Reference float64 `json:"reference,omitempty"`
	Ratio     float64 `json:"ratio,omitempty"`
	Target    float64 `json:"target"`
	Measured  bool    `json:"measured"`
	Pass      bool    `json:"pass"`
	Text      string  `json:"text"`
}

// runDrillBench runs the selected parts of -drill against a fresh Lifeboat
// repository. Failures are recorded in the result.
func (h *harness) runDrillBench(ctx context.Context) *drillResults {
	t := h.lifeboatSpec()
	res := &drillResults{Parts: h.cfg.drill.parts}
	res.Version = h.toolVersion(ctx, t)
	h.logf("drill benchmark (lifeboat %s): parts %s", res.Version, strings.Join(res.Parts, ","))
	defer func() {
		bg := context.WithoutCancel(ctx)
		if err := h.cl.setArchiveCommand(bg, discardArchiveCommand); err != nil {
			h.logf("warning: reset archive_command: %v", err)
		}
		if err := h.setArchiveTimeout(bg, 0); err != nil {
			h.logf("warning: reset archive_timeout: %v", err)
		}
		res.Targets = drillTargets(res, h.cfg)
	}()
	// A run stopped halfway may have left archive_timeout set.
	if err := h.setArchiveTimeout(ctx, 0); err != nil {
		res.Error = err.Error()
		return res
	}
	var err error
	if res.Init, err = h.freshRepository(ctx, 0, t); err != nil {
		res.Error = err.Error()
		return res
	}
	res.Full = h.step(ctx, 0, t, "full", t.full, false)
	if !res.Full.OK {
		res.Error = "full backup failed: " + res.Full.Error
		return res
	}
	if h.cfg.drill.has(drillPartRTO) {
		if err := h.rtoPart(ctx, t, res); err != nil {
			res.Error = err.Error()
			return res
		}
	}
	if ctx.Err() == nil && h.cfg.drill.has(drillPartRPO) {
		res.RPO = h.rpoPart(ctx, t)
	}
	return res
}

// rtoPart gives the repository WAL to replay (pgbench after the full
// backup), then pairs random-point drills with bare recoveries.
func (h *harness) rtoPart(ctx context.Context, t toolSpec, res *drillResults) error {
	wl := &drillWorkload{}
	wl.Pgbench, wl.Archiver, _ = h.workload(ctx, 0, t)
	res.Workload = wl
	if !wl.Pgbench.OK {
		return fmt.Errorf("pgbench before the drills: %s", wl.Pgbench.Error)
	}
	// The window's last commits sit in a segment that is not full: switch
	// so they are archived and a random point can fall anywhere in the
	// window. The checkpoint keeps a spread checkpoint of the source from
	// writing in the middle of a measurement.
	if _, err := h.cl.psql(ctx, "drill-switch", "SELECT pg_switch_wal()", "CHECKPOINT"); err != nil {
		return err
	}
	if _, ok := h.cl.waitArchived(ctx, h.cfg.drainTimeout); !ok {
		return fmt.Errorf("the archiver did not drain within %s after pgbench", h.cfg.drainTimeout)
	}
	for run := 1; run <= h.cfg.drill.runs && ctx.Err() == nil; run++ {
		r := rtoRun{Run: run}
		r.Drill = h.lifeboatDrill(ctx, fmt.Sprintf("drill-rto%d", run), t, true, "--random-point")
		rep := r.Drill.Report
		if rep == nil || rep.Target.IsZero() {
			h.logf("drill run %d: drill FAILED, no target to restore: %s", run, r.Drill.Error)
			res.RTO = append(res.RTO, r)
			continue
		}
		h.logf("drill run %d: drill to %s: RTO %.1f s (%s), wall %.1f s, passed %v",
			run, rep.Target.Format(time.RFC3339Nano), rep.RTOSeconds, phaseList(rep), r.Drill.WallSeconds, rep.Passed)
		r.Bare = h.bareRecovery(ctx, run, t, rep.Target)
		if r.Drill.passed() && r.Bare.OK && r.Bare.TotalSeconds > 0 {
			r.Ratio = rep.RTOSeconds / r.Bare.TotalSeconds
		}
		res.RTO = append(res.RTO, r)
	}
	return nil
}

// lifeboatDrill runs `lifeboat drill bench POINT --json` as root (the
// throwaway server as the bench user) or as the unprivileged user running
// the harness, and reads its report. The drill's stdout is its report even
// when it fails.
func (h *harness) lifeboatDrill(ctx context.Context, label string, t toolSpec, dropCaches bool, point ...string) drillRun {
	args := append([]string{"-c", filepath.Join(h.cfg.root, "lifeboat.yaml"), "drill", stanza}, point...)
	args = append(args, "--work-dir", filepath.Join(h.cfg.root, "tmp"), "--json")
	r := h.r
	if h.cred != nil {
		args = append(args, "--run-as", h.cfg.user)
		r = h.rootRunner()
	}
	d := drillRun{Args: args}
	if dropCaches {
		d.CachesDropped = h.dropCaches()
	}
	h.logf("%s: lifeboat drill %s", label, strings.Join(point, " "))
	d.Started = time.Now()
	// LIFEBOAT_PG_BIN makes the drill use the cluster's PostgreSQL.
	out, err := r.run(ctx, cmdSpec{label: label, path: t.bin, args: args,
		env: append([]string{pgbin.EnvBin + "=" + h.cfg.pgBin}, t.env...), timeout: h.cfg.stepTimeout})
	d.WallSeconds, d.ExitCode = out.Wall.Seconds(), out.ExitCode
	rep, perr := evidence.Unmarshal([]byte(out.Stdout))
	if perr == nil {
		d.Report = rep
	}
	switch {
	case err != nil && rep != nil && rep.Error != "":
		d.Error = "drill failed: " + rep.Error
	case err != nil:
		d.Error = err.Error()
	case perr != nil:
		d.Error = "read the drill's report: " + perr.Error()
	}
	if h.cred != nil {
		// The drill stored its report (and the catalog) as root; later
		// commands of the bench user must still own everything.
		for _, dir := range []string{t.repoDir, h.lifeboatStateDir()} {
			if err := h.chownTree(dir); err != nil {
				h.logf("warning: %v", err)
			}
		}
	}
	return d
}

// rootRunner runs commands as root with the harness's environment.
func (h *harness) rootRunner() *runner {
	var env []string
	for _, kv := range h.r.env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "USER", "LOGNAME":
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "HOME=/root", "USER=root", "LOGNAME=root")
	return &runner{env: env, logDir: h.r.logDir}
}

// chownTree gives everything under dir to the bench user ("" and a missing
// dir are no-ops).
func (h *harness) chownTree(dir string) error {
	if dir == "" {
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := os.Lchown(p, h.uid, h.gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("give %s to %s: %w", dir, h.cfg.user, err)
	}
	return nil
}

// bareRecovery restores the point target into an empty directory with
// `lifeboat restore --time`, starts the result as the bench user and waits
// until recovery is over and the server is promoted. It is timed as one
// step, like the drill's RTO; the page cache is dropped before it.
func (h *harness) bareRecovery(ctx context.Context, run int, t toolSpec, target time.Time) bareRun {
	b := bareRun{Target: target}
	dir := filepath.Join(h.cfg.root, "restore-bare")
	if err := os.RemoveAll(dir); err != nil {
		b.Error = err.Error()
		return b
	}
	if err := h.mkdirOwned(dir, 0o700); err != nil {
		b.Error = err.Error()
		return b
	}
	defer func() {
		if h.cfg.keepRestore {
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			h.logf("warning: remove %s: %v", dir, err)
		}
	}()
	label := fmt.Sprintf("drill-rto%d-bare", run)
	logFile := h.logPath(label + "-server")
	_ = os.Remove(logFile)
	// --archive-off as the drill does: the copy must not archive into the
	// repository.
	args := []string{"-c", filepath.Join(h.cfg.root, "lifeboat.yaml"), "restore", stanza, "--to", dir,
		"--time", target.UTC().Format(time.RFC3339Nano), "--archive-off"}

	b.CachesDropped = h.dropCaches()
	h.logf("%s: lifeboat restore --time %s, then pg_ctl start", label, target.UTC().Format(time.RFC3339Nano))
	start := time.Now()
	_, err := h.r.run(ctx, cmdSpec{label: label, path: t.bin, args: args, env: t.env, timeout: h.cfg.stepTimeout})
	b.RestoreSeconds = time.Since(start).Seconds()
	if err != nil {
		b.Error = "restore: " + err.Error()
		return b
	}
	// hot_standby=off as in the drill: the server takes connections only
	// once recovery is over and it is promoted, and pgbin starts it as it
	// starts the drill's, polling for a connection every 100 ms.
	vc := h.cl.restored(dir, logFile, map[string]string{"hot_standby": "off"}, t.env)
	recStart := time.Now()
	sctx, cancel := context.WithTimeout(ctx, h.cfg.stepTimeout)
	err = vc.Start(sctx)
	cancel()
	defer vc.stopNow(ctx)
	var out string
	if err == nil {
		out, err = vc.query(ctx, promotedSQL)
	}
	end := time.Now()
	b.RecoverySeconds, b.TotalSeconds = end.Sub(recStart).Seconds(), end.Sub(start).Seconds()
	if err != nil {
		b.Error = fmt.Sprintf("recover the restored cluster (log %s): %v", logFile, err)
		return b
	}
	if done, ok := pgbin.LogTime(logFile, "redo done at"); ok {
		b.ReplaySeconds = min(max(done.Sub(recStart), 0), end.Sub(recStart)).Seconds()
	}
	inRecovery, epoch, _ := strings.Cut(out, "|")
	if inRecovery != "false" {
		b.Error = "the restored cluster took connections but is still in recovery"
		return b
	}
	if epoch != "" {
		if b.Recovered, err = parseEpoch(epoch); err != nil {
			b.Error = err.Error()
			return b
		}
	}
	b.OK = true
	h.logf("%s: restore %.1f s + recovery %.1f s (replay %.1f s) = %.1f s", label, b.RestoreSeconds, b.RecoverySeconds, b.ReplaySeconds, b.TotalSeconds)
	return b
}

// promotedSQL is the first query on a recovered cluster: whether it is
// still in recovery, and the time of the last commit it replayed.
const promotedSQL = "SELECT pg_is_in_recovery()::text || '|' || coalesce(extract(epoch FROM pg_last_xact_replay_timestamp())::text, '')"

// parseEpoch reads extract(epoch ...) output ("1763915460.123456") without
// the rounding of a float.
func parseEpoch(s string) (time.Time, error) {
	sec, frac, _ := strings.Cut(strings.TrimSpace(s), ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse epoch %q: %w", s, err)
	}
	var ns int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("parse epoch %q: %w", s, err)
		}
	}
	return time.Unix(n, ns).UTC(), nil
}

// setArchiveTimeout sets archive_timeout through ALTER SYSTEM (0 resets it)
// and waits until the server runs with it.
func (h *harness) setArchiveTimeout(ctx context.Context, d time.Duration) error {
	stmt := "ALTER SYSTEM RESET archive_timeout"
	if d > 0 {
		stmt = fmt.Sprintf("ALTER SYSTEM SET archive_timeout = '%ds'", int(d.Seconds()))
	}
	if _, err := h.cl.psql(ctx, "archive_timeout", stmt, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("set archive_timeout: %w", err)
	}
	want := strconv.Itoa(int(d.Seconds()))
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := h.cl.query(ctx, "SELECT setting FROM pg_settings WHERE name = 'archive_timeout'")
		if err != nil {
			return err
		}
		if got == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("archive_timeout is still %s s after reload, want %s s", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// rpoPart runs pgbench with archive_timeout set and, while it runs, latest
// drills spaced -rpo-spacing apart.
func (h *harness) rpoPart(ctx context.Context, t toolSpec) *rpoResult {
	dc := h.cfg.drill
	rp := &rpoResult{ArchiveTimeoutSeconds: dc.archiveTimeout.Seconds(), PgbenchClients: h.cfg.pgbenchClients, PgbenchRate: dc.rpoRate}
	if err := h.setArchiveTimeout(ctx, dc.archiveTimeout); err != nil {
		rp.Error = err.Error()
		return rp
	}
	// A fresh snapshot keeps each latest drill's replay to this part's WAL.
	rp.Incr = h.step(ctx, 0, t, "rpo-incr", t.incr, false)
	if !rp.Incr.OK {
		rp.Error = "incremental backup failed: " + rp.Incr.Error
		return rp
	}
	commits0, failed0, err := h.commitsAndFailures(ctx)
	if err != nil {
		rp.Error = err.Error()
		return rp
	}

	args := []string{"-N", "-c", strconv.Itoa(h.cfg.pgbenchClients), "-T", "86400"}
	if dc.rpoRate > 0 {
		args = append(args, "-R", strconv.Itoa(dc.rpoRate))
	}
	args = append(append(args, h.cl.ClientArgs()...), "postgres")
	h.logf("rpo: pgbench %s in the background, archive_timeout %s", strings.Join(args[:len(args)-7], " "), dc.archiveTimeout)
	pgCtx, stopPgbench := context.WithCancel(ctx)
	defer stopPgbench()
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := h.r.run(pgCtx, cmdSpec{label: "drill-rpo-pgbench", path: h.cl.Bin.Path("pgbench"), args: args})
		done <- err
	}()
	ended := false
	// pause waits d; false when pgbench ended on its own (the load is gone,
	// so further drills would measure something else) or ctx ended.
	pause := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case err := <-done:
			ended = true
			rp.PgbenchError = fmt.Sprintf("pgbench ended before the drills did: %v", err)
			return false
		case <-time.After(d):
			return true
		}
	}
	if pause(dc.rpoWarmup) {
		for i := 1; i <= dc.rpoDrills; i++ {
			rp.Drills = append(rp.Drills, h.latestDrill(ctx, i, t))
			if i < dc.rpoDrills && !pause(dc.rpoSpacing) {
				break
			}
		}
	}
	end := time.Now()
	stopPgbench()
	if !ended {
		<-done
	}
	rp.Seconds = end.Sub(start).Seconds()
	if commits1, failed1, err := h.commitsAndFailures(context.WithoutCancel(ctx)); err == nil {
		rp.TPS = float64(commits1-commits0) / rp.Seconds
		rp.ArchiveFailures = failed1 - failed0
	} else {
		h.logf("warning: %v", err)
	}
	if recs, _, err := readPushLog(h.pushLogPath(t.name)); err == nil {
		rp.WALPush = summarisePushes(recs, start.UnixNano(), end.UnixNano())
	} else {
		h.logf("warning: %v", err)
	}
	if rp.PgbenchError != "" && rp.Error == "" {
		rp.Error = rp.PgbenchError
	}
	return rp
}

// commitsAndFailures reads the commit count of database postgres and the
// archiver's failure count.
func (h *harness) commitsAndFailures(ctx context.Context) (commits, failed int64, err error) {
	out, err := h.cl.query(ctx, `SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres') || '|' ||
		(SELECT failed_count FROM pg_stat_archiver)`)
	if err != nil {
		return 0, 0, err
	}
	c, f, _ := strings.Cut(out, "|")
	if commits, err = strconv.ParseInt(c, 10, 64); err == nil {
		failed, err = strconv.ParseInt(f, 10, 64)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("parse commit and archive failure counts %q: %w", out, err)
	}
	return commits, failed, nil
}

// latestDrill runs one latest drill under load and, alongside, finds the
// newest commit the archive held when it started.
func (h *harness) latestDrill(ctx context.Context, i int, t toolSpec) rpoDrill {
	var d rpoDrill
	st, err := h.cl.archiver(ctx, h.segSize)
	if err != nil {
		d.ArchiveError = err.Error()
	}
	d.ArchiveAtStart = st
	// The segment is read from the source's pg_wal while the drill starts:
	// it was archived moments ago and is not recycled before the next
	// checkpoint.
	found := make(chan struct{})
	go func() {
		defer close(found)
		if d.ArchiveError != "" {
			return
		}
		last, err := h.lastCommitIn(ctx, st.LastArchivedWAL)
		if err != nil {
			d.ArchiveError = err.Error()
		}
		d.ArchivedLastCommit = last
	}()
	d.Drill = h.lifeboatDrill(ctx, fmt.Sprintf("drill-rpo%d", i), t, false, "--latest")
	<-found
	if rep := d.Drill.Report; rep != nil {
		if !d.ArchivedLastCommit.IsZero() {
			d.ArchiveRPOSeconds = round3(rep.Target.Sub(d.ArchivedLastCommit).Seconds())
		}
		if !rep.Recovered.IsZero() {
			d.RecoveredAfterTargetSeconds = round3(rep.Recovered.Sub(rep.Target).Seconds())
		}
		h.logf("drill-rpo%d: RPO %.3f s (recovered %s, %.1f s after the drill's start); archive at start: %s, newest commit %.3f s before; RTO %.1f s, passed %v",
			i, rep.RPOSeconds, rep.Recovered.Format(time.RFC3339Nano), d.RecoveredAfterTargetSeconds,
			st.LastArchivedWAL, d.ArchiveRPOSeconds, rep.RTOSeconds, rep.Passed)
	} else {
		h.logf("drill-rpo%d FAILED: %s", i, d.Drill.Error)
	}
	return d
}

// lastCommitIn returns the time of the newest commit record in WAL segment
// seg of the source cluster.
func (h *harness) lastCommitIn(ctx context.Context, seg string) (time.Time, error) {
	if !isSegmentName(seg) {
		return time.Time{}, fmt.Errorf("no WAL segment archived yet (last archived %q)", seg)
	}
	path := filepath.Join(h.cl.DataDir, "pg_wal", seg)
	// STARTSEG and ENDSEG both: pg_waldump must not read on into the next,
	// unarchived segment.
	out, err := h.r.run(ctx, cmdSpec{path: h.cl.Bin.Path("pg_waldump"), args: []string{"--rmgr=Transaction", path, path},
		timeout: 2 * time.Minute})
	if last := lastCommitTime(out.Stdout); !last.IsZero() {
		// pg_waldump exits non-zero when the segment's last record goes on
		// into the next; what it printed before is good.
		return last, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("pg_waldump %s: %w", seg, err)
	}
	return time.Time{}, fmt.Errorf("no commit in WAL segment %s", seg)
}

// waldumpCommit finds a commit record's time in pg_waldump's output (run
// with TZ=UTC).
var waldumpCommit = regexp.MustCompile(`desc: COMMIT (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) UTC`)

// lastCommitTime returns the newest commit time in pg_waldump output.
func lastCommitTime(out string) time.Time {
	var last time.Time
	for _, m := range waldumpCommit.FindAllStringSubmatch(out, -1) {
		if t, err := time.Parse("2006-01-02 15:04:05.999999999", m[1]); err == nil && t.After(last) {
			last = t
		}
	}
	return last
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
