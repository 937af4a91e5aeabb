package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// stepResult is one measured step of one tool.
type stepResult struct {
	Name            string  `json:"name"`
	Ran             bool    `json:"ran"`
	OK              bool    `json:"ok"`
	Error           string  `json:"error,omitempty"`
	Stderr          string  `json:"stderr,omitempty"` // tail, kept only when the step failed
	WallSeconds     float64 `json:"wall_seconds"`
	Bytes           int64   `json:"bytes"` // repository growth for a backup, restored PGDATA size for a restore
	RepoBytesBefore int64   `json:"repo_bytes_before"`
	RepoBytesAfter  int64   `json:"repo_bytes_after"`
	MaxRSSKiB       int64   `json:"max_rss_kib"`  // largest single process (wait4 ru_maxrss)
	TreeRSSKiB      int64   `json:"tree_rss_kib"` // largest sampled sum over the process tree
	CachesDropped   bool    `json:"caches_dropped"`
}

type pgbenchResult struct {
	Ran          bool    `json:"ran"`
	OK           bool    `json:"ok"`
	Error        string  `json:"error,omitempty"`
	Seconds      int     `json:"seconds"`
	Clients      int     `json:"clients"`
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
}

type archiverResult struct {
	AtEnd          archiverState `json:"at_pgbench_end"`
	AfterDrain     archiverState `json:"after_drain"`
	MaxLagSegments int64         `json:"max_lag_segments"` // sampled every second during pgbench
	MaxReadyFiles  int           `json:"max_ready_files"`
	DrainSeconds   float64       `json:"drain_seconds"`
	Drained        bool          `json:"drained"`
}

type verifyResult struct {
	Ran          bool    `json:"ran"`
	OK           bool    `json:"ok"`
	Error        string  `json:"error,omitempty"`
	StartSeconds float64 `json:"start_seconds"` // pg_ctl start until the restored cluster accepts queries
	Want         string  `json:"want,omitempty"`
	Got          string  `json:"got,omitempty"`
}

// toolResult is one tool's phase within one run.
type toolResult struct {
	Run            int            `json:"run"`
	Tool           string         `json:"tool"`
	Version        string         `json:"version"`
	Error          string         `json:"error,omitempty"`
	Init           stepResult     `json:"init"`
	Full           stepResult     `json:"full_backup"`
	Pgbench        pgbenchResult  `json:"pgbench"`
	WindowWALBytes int64          `json:"window_wal_bytes"` // repository growth while pgbench ran and the archiver drained
	Archiver       archiverResult `json:"archiver"`
	WALPush        walPushStats   `json:"wal_push_window"`    // pushes started during pgbench or its drain
	WALPushAll     walPushStats   `json:"wal_push_phase"`     // every push of the phase
	Copy           *copyLagResult `json:"copy_lag,omitempty"` // Lifeboat with -copy
	Incr           stepResult     `json:"incremental_backup"`
	Restore        stepResult     `json:"restore"`
	Verify         verifyResult   `json:"verify"`
}

// runPhase takes one tool from an empty repository through full backup,
// workload, incremental backup and restore. Failures are recorded in the
// result, never returned: the other tool's phase still runs.
func (h *harness) runPhase(ctx context.Context, run int, t toolSpec) toolResult {
	res := toolResult{Run: run, Tool: t.name}
	res.Version = h.toolVersion(ctx, t)
	h.logf("run %d: %s phase (%s)", run, t.name, res.Version)
	phaseStart := time.Now()

	defer func() {
		if err := h.cl.setArchiveCommand(context.WithoutCancel(ctx), discardArchiveCommand); err != nil {
			h.logf("warning: reset archive_command: %v", err)
		}
	}()
	var err error
	if res.Init, err = h.freshRepository(ctx, run, t); err != nil {
		res.Error = err.Error()
		return res
	}

	res.Full = h.step(ctx, run, t, "full", t.full, true)
	if !res.Full.OK {
		res.Error = "full backup failed: " + res.Full.Error
		h.finishPushStats(&res, t, phaseStart, time.Time{}, time.Time{})
		return res
	}

	windowStart := time.Now()
	repoBefore := h.repoBytes(ctx, t)
	res.Pgbench, res.Archiver, res.Copy = h.workload(ctx, run, t)
	windowEnd := time.Now()
	repoAfter := h.repoBytes(ctx, t)
	res.WindowWALBytes = repoAfter - repoBefore
	want, werr := h.cl.query(ctx, checksumSQL)
	if werr != nil {
		h.logf("warning: source checksum: %v", werr)
	}

	res.Incr = h.step(ctx, run, t, "incr", t.incr, true)
	res.Restore = h.restoreStep(ctx, run, t)
	if res.Restore.OK && h.cfg.verifyRestore && werr == nil {
		res.Verify = h.verify(ctx, run, t, want)
	}
	if !h.cfg.keepRestore {
		if err := os.RemoveAll(t.restoreTo); err != nil {
			h.logf("warning: remove %s: %v", t.restoreTo, err)
		}
	}
	h.finishPushStats(&res, t, phaseStart, windowStart, windowEnd)
	for _, s := range []stepResult{res.Incr, res.Restore} {
		if !s.OK && res.Error == "" {
			res.Error = s.Name + " failed: " + s.Error
		}
	}
	return res
}

// freshRepository gives tool t an empty repository with the archiver
// pointed at it: it lets the archiver drain into /bin/true (so t inherits no
// WAL from the build or another phase), wipes t's repository, key and state,
// writes its configuration and archive_command wrapper, creates the
// repository (the returned step, unmeasured) and switches archive_command
// to the wrapper. The caller resets archive_command when it is done.
func (h *harness) freshRepository(ctx context.Context, run int, t toolSpec) (stepResult, error) {
	if err := h.cl.setArchiveCommand(ctx, discardArchiveCommand); err != nil {
		return stepResult{}, err
	}
	h.cl.waitArchived(ctx, time.Minute)

	for _, p := range append(t.wipe, t.restoreTo, h.pushLogPath(t.name)) {
		if err := os.RemoveAll(p); err != nil {
			return stepResult{}, fmt.Errorf("wipe %s: %w", p, err)
		}
	}
	for _, b := range []string{t.bucket, t.copyBucket} {
		if b == "" {
			continue
		}
		if err := h.minio.emptyBucket(ctx, b); err != nil {
			return stepResult{}, err
		}
	}
	for _, p := range t.mkdirs {
		if err := h.mkdirOwned(p, 0o750); err != nil {
			return stepResult{}, err
		}
	}
	archiveCmd, err := h.writeToolFiles(t)
	if err != nil {
		return stepResult{}, err
	}
	init := h.step(ctx, run, t, "init", t.init, false)
	if !init.OK {
		return init, fmt.Errorf("repository init failed: %s", init.Error)
	}
	if err := h.cl.setArchiveCommand(ctx, archiveCmd); err != nil {
		return init, err
	}
	return init, nil
}

// checksumSQL fingerprints what pgbench changed; the restored cluster must
// answer the same as the source did when the incremental backup started.
// pgbench -N updates only pgbench_accounts and inserts into pgbench_history.
const checksumSQL = `SELECT (SELECT count(*) || ',' || coalesce(sum(delta), 0) FROM pgbench_history) || ',' ||
	(SELECT sum(abalance) FROM pgbench_accounts) || ',' || (SELECT count(*) FROM transactions)`

func (h *harness) finishPushStats(res *toolResult, t toolSpec, phaseStart, windowStart, windowEnd time.Time) {
	recs, bad, err := readPushLog(h.pushLogPath(t.name))
	if err != nil {
		h.logf("warning: %v", err)
		return
	}
	res.WALPushAll = summarisePushes(recs, phaseStart.UnixNano(), time.Now().UnixNano())
	res.WALPushAll.MalformedLn = bad
	if !windowStart.IsZero() {
		res.WALPush = summarisePushes(recs, windowStart.UnixNano(), windowEnd.UnixNano())
	}
}

// step runs one tool command; measured steps drop the page cache first and
// record the repository growth.
func (h *harness) step(ctx context.Context, run int, t toolSpec, name string, args []string, measured bool) stepResult {
	s := stepResult{Name: name, Ran: true}
	s.RepoBytesBefore = h.repoBytes(ctx, t)
	if measured {
		s.CachesDropped = h.dropCaches()
	}
	h.logf("run %d: %s %s", run, t.name, name)
	r, err := h.r.run(ctx, cmdSpec{label: stepLabel(run, t.name, name), path: t.bin, args: args, env: t.env,
		timeout: h.cfg.stepTimeout, sample: measured})
	s.WallSeconds = r.Wall.Seconds()
	s.MaxRSSKiB, s.TreeRSSKiB = r.MaxRSSKiB, r.TreeRSSKiB
	s.RepoBytesAfter = h.repoBytes(ctx, t)
	s.Bytes = s.RepoBytesAfter - s.RepoBytesBefore
	if err != nil {
		s.Error, s.Stderr = err.Error(), r.Stderr
		h.logf("run %d: %s %s FAILED after %.1f s: %v", run, t.name, name, s.WallSeconds, err)
		return s
	}
	s.OK = true
	h.logf("run %d: %s %s: %.1f s, %s, peak RSS %s", run, t.name, name, s.WallSeconds, humanBytes(s.Bytes), humanKiB(s.MaxRSSKiB))
	return s
}

// repoBytes is the size of the tool's repository: the files of its directory,
// or the objects of its bucket. A size that cannot be taken is logged, so a
// byte count computed from it is not trusted silently.
func (h *harness) repoBytes(ctx context.Context, t toolSpec) int64 {
	var n int64
	var err error
	if t.bucket != "" {
		n, err = h.minio.bucketBytes(ctx, t.bucket)
	} else {
		n, err = dirBytes(t.repoDir)
	}
	if err != nil {
		h.logf("warning: repository size of %s: %v", t.name, err)
	}
	return n
}

func (h *harness) restoreStep(ctx context.Context, run int, t toolSpec) stepResult {
	s := stepResult{Name: "restore"}
	if err := os.RemoveAll(t.restoreTo); err != nil {
		s.Error = err.Error()
		return s
	}
	// PostgreSQL insists on 0700 (or 0750) for PGDATA; both tools get an
	// existing, empty directory.
	if err := h.mkdirOwned(t.restoreTo, 0o700); err != nil {
		s.Error = err.Error()
		return s
	}
	s = h.step(ctx, run, t, "restore", t.restore(t.restoreTo), true)
	s.RepoBytesBefore, s.RepoBytesAfter = 0, 0
	size, err := dirBytes(t.restoreTo)
	if err != nil {
		h.logf("warning: %v", err)
	}
	s.Bytes = size
	return s
}

var (
	tpsRe = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	txRe  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

// workload runs pgbench while sampling the archiver (and the copy's lag when
// the tool has a copy), then waits for the archiver and the copy to catch up.
func (h *harness) workload(ctx context.Context, run int, t toolSpec) (pgbenchResult, archiverResult, *copyLagResult) {
	pr := pgbenchResult{Ran: true, Seconds: h.cfg.pgbenchSeconds, Clients: h.cfg.pgbenchClients}
	var ar archiverResult
	var cs *copySampler
	if len(t.copyStatus) > 0 {
		cs = h.startCopySampler(ctx, run, t)
	}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
			ar.MaxReadyFiles = max(ar.MaxReadyFiles, h.cl.readyCount())
			if st, err := h.cl.archiver(sampleCtx, h.segSize); err == nil {
				ar.MaxLagSegments = max(ar.MaxLagSegments, st.LagSegments)
			}
		}
	}()
	h.logf("run %d: %s pgbench -N -c %d -T %d -R %d", run, t.name, pr.Clients, pr.Seconds, h.cfg.pgbenchRate)
	args := []string{"-N", "-c", strconv.Itoa(pr.Clients), "-T", strconv.Itoa(pr.Seconds)}
	if h.cfg.pgbenchRate > 0 {
		args = append(args, "-R", strconv.Itoa(h.cfg.pgbenchRate))
	}
	r, err := h.r.run(ctx, cmdSpec{label: stepLabel(run, t.name, "pgbench"), path: h.cl.Bin.Path("pgbench"),
		args:    append(append(args, h.cl.ClientArgs()...), "postgres"),
		timeout: time.Duration(pr.Seconds)*time.Second + 10*time.Minute})
	stopSampling()
	wg.Wait()
	if err != nil {
		pr.Error = err.Error()
	} else {
		pr.OK = true
	}
	if m := tpsRe.FindStringSubmatch(r.Stdout); m != nil {
		pr.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := txRe.FindStringSubmatch(r.Stdout); m != nil {
		pr.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if st, err := h.cl.archiver(ctx, h.segSize); err == nil {
		ar.AtEnd = st
	}
	var cr *copyLagResult
	if cs != nil {
		cr = cs.finish()
	}
	wait, ok := h.cl.waitArchived(ctx, h.cfg.drainTimeout)
	ar.DrainSeconds, ar.Drained = wait.Seconds(), ok
	if st, err := h.cl.archiver(ctx, h.segSize); err == nil {
		ar.AfterDrain = st
	}
	h.logf("run %d: %s pgbench %.0f tps; archiver lag at end %d segments (%d .ready), drained in %.1f s (ok=%v)",
		run, t.name, pr.TPS, ar.AtEnd.LagSegments, ar.AtEnd.ReadyFiles, ar.DrainSeconds, ar.Drained)
	if cr != nil {
		h.catchUp(ctx, run, t, cr, h.cfg.drainTimeout)
		h.logf("run %d: %s copy lag max %d WAL files (median %g, max age %.1f s) over %d samples (%d failed); caught up %.1f s after the archiver (ok=%v)",
			run, t.name, cr.MaxWALFiles, cr.MedianWALFiles, cr.MaxWALSeconds, cr.Samples, cr.FailedSamples, cr.CatchUpSeconds, cr.CaughtUp)
	}
	return pr, ar, cr
}

// verify starts the restored cluster on its own port, with archiving off so
// it cannot write into the repository, and compares its data to the source.
func (h *harness) verify(ctx context.Context, run int, t toolSpec, want string) verifyResult {
	v := verifyResult{Ran: true, Want: want}
	// t.env reaches the tool's restore_command through the server's environment.
	vc := h.cl.restored(t.restoreTo, h.logPath(stepLabel(run, t.name, "verify-server")),
		map[string]string{"archive_mode": "off", "shared_buffers": "256MB"}, t.env)
	h.logf("run %d: %s verify restored cluster", run, t.name)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	err := vc.Start(sctx)
	cancel()
	v.StartSeconds = time.Since(start).Seconds()
	defer vc.stopNow(ctx)
	if err != nil {
		v.Error = fmt.Sprintf("start restored cluster (log %s): %v", vc.LogFile, err)
		return v
	}
	got, err := vc.query(ctx, checksumSQL)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Got = got
	v.OK = got == want
	if !v.OK {
		v.Error = fmt.Sprintf("restored data differs: got %s, want %s (history rows, history delta sum, account balance sum, transactions rows)", got, want)
	}
	return v
}
