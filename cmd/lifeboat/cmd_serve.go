package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

type serveOptions struct {
	jobs          int
	stopTimeout   time.Duration
	drainInterval time.Duration
}

func newServeCommand(g *globalOptions) *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run every asset's schedule, record each run, drain the copy queues",
		Long: `Run as a daemon: back up each asset with a schedule in the policy when its
schedule says (as "lifeboat backup ASSET" in a child process, between the
asset's pre and post hooks), record every run in the catalog of the state
directory (see lifeboat runs), and send what this host's copy queues hold to
the copy repositories.

One run per asset at a time: a slot that comes while the asset's previous
run is still going is skipped and recorded as skipped. Slots missed while the
daemon was down are made up by one run when it starts, not one per slot.

SIGHUP reloads the policy; an invalid policy is refused and the running one
kept. SIGTERM (or SIGINT) stops it: no new runs, running backups are asked to
stop and recorded as aborted; after --stop-timeout they are killed. It exits
0 when everything stopped in time. See docs/daemon.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	cmd.Flags().IntVar(&o.jobs, "jobs", 2, "most runs at once, over all assets")
	cmd.Flags().DurationVar(&o.stopTimeout, "stop-timeout", time.Minute, "on SIGTERM, how long running backups get to stop before they are killed")
	cmd.Flags().DurationVar(&o.drainInterval, "drain-interval", 10*time.Second, "how often to look at the copy queues")
	return cmd
}

// daemon is lifeboat serve's state. Everything but the jobs' own
// goroutines runs on the loop's goroutine, so none of it needs a lock.
type daemon struct {
	g     *globalOptions
	o     serveOptions
	log   *slog.Logger
	cat   *catalog.Catalog
	sched *scheduler.Scheduler
	pol   *policy.Policy
	// exe and config are how children are started: this binary and the
	// absolute path of the policy file.
	exe, config string

	pending []scheduler.Run // due, waiting for a free worker
	running map[string]*job // by asset
	done    chan *job
	// stop is closed when shutdown begins (children get SIGTERM), kill
	// when its bound is up (their process groups get SIGKILL).
	stop, kill chan struct{}

	// watch runs check every check.interval and feeds metrics and alerts.
	watch *watcher

	drainCancel context.CancelFunc
	drainCtx    context.Context
	draining    bool
	drained     chan error
	drainErr    string // the last drain failure, to log a change once
}

// maxSleep bounds the loop's sleep, so a wall clock stepped forward (NTP,
// a resumed host) delays a slot by at most this.
const maxSleep = time.Minute

func runServe(ctx context.Context, g *globalOptions, o serveOptions) error {
	if o.jobs < 1 {
		return usagef("--jobs must be at least 1")
	}
	if o.stopTimeout <= 0 || o.drainInterval <= 0 {
		return usagef("--stop-timeout and --drain-interval must be positive")
	}
	level := slog.LevelInfo
	if g.verbose >= 2 {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
	g.log = log // the copy-queue drain logs through it too
	// Caught from the start: a reload sent while starting would otherwise
	// end the process (SIGHUP's default). It is served once the loop runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	p, err := g.policy()
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("serve: find this program: %w", err)
	}
	config, err := filepath.Abs(g.configPath)
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	unlock, err := lockStateDir(p.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	// Records are written with a context that outlives the shutdown
	// signal: the end of an aborted run must still be recorded.
	bg := context.WithoutCancel(ctx)
	cat, err := catalog.Open(bg, catalog.Path(p.StateDir))
	if err != nil {
		return err
	}
	defer cat.Close()
	d := &daemon{g: g, o: o, log: log, cat: cat, sched: scheduler.New(), pol: p, exe: exe, config: config,
		running: map[string]*job{}, done: make(chan *job), stop: make(chan struct{}), kill: make(chan struct{}),
		drained: make(chan error, 1)}
	d.drainCtx, d.drainCancel = context.WithCancel(bg)
	defer d.drainCancel()

	now := time.Now()
	last, err := d.lastRuns(bg, now)
	if err != nil {
		return err
	}
	jobs, err := d.jobsOf(p)
	if err != nil {
		return &usageError{Err: err}
	}
	d.sched.Load(jobs, now, last)
	if d.watch, err = newWatcher(bg, d, p); err != nil {
		return err
	}
	defer d.watch.close()
	log.Info("serving", "policy", config, "assets", len(p.Assets), "scheduled", len(jobs),
		"catalog", catalog.Path(p.StateDir), "jobs", o.jobs)
	d.logSchedule(jobs)
	return d.loop(ctx, hup)
}

// lastRuns reads from the catalog where each asset's schedule stands: the
// slot of its newest scheduled run, and whether that run served it.
func (d *daemon) lastRuns(ctx context.Context, now time.Time) (map[string]scheduler.Last, error) {
	// The state directory is locked: runs still marked running belong to
	// a daemon that died, and will never end on their own.
	n, err := d.cat.AbortRunning(ctx, now, "the daemon stopped during the run")
	if err != nil {
		return nil, err
	}
	if n > 0 {
		d.log.Warn("runs left unfinished by a previous daemon recorded as aborted", "runs", n)
	}
	records, err := d.cat.LastScheduled(ctx)
	if err != nil {
		return nil, err
	}
	// A run that ended, well or not, served its slot; one a stop or a
	// crash interrupted did not, and is made up.
	last := make(map[string]scheduler.Last, len(records))
	for asset, r := range records {
		last[asset] = scheduler.Last{Slot: r.Slot, Served: r.Result == catalog.OK || r.Result == catalog.Failed}
	}
	return last, nil
}

// lockStateDir makes this daemon the only one of its state directory: two
// would run every job twice and close each other's runs as aborted.
func lockStateDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("serve: state_dir: %w", err)
	}
	path := filepath.Join(dir, "serve.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("serve: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("serve: another lifeboat serve is running with state_dir %s", dir)
		}
		return nil, fmt.Errorf("serve: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// jobsOf is the schedule of every asset that has one.
func (d *daemon) jobsOf(p *policy.Policy) ([]scheduler.Job, error) {
	var jobs []scheduler.Job
	for i := range p.Assets {
		a := &p.Assets[i]
		if a.Schedule == "" {
			continue
		}
		s, err := policy.ParseSchedule(a.Schedule)
		if err != nil {
			return nil, fmt.Errorf("asset %s: %w", a.Name, err)
		}
		jobs = append(jobs, scheduler.Job{Asset: a.Name, Spec: a.Schedule, Schedule: s})
	}
	for i := range p.Assets {
		a := &p.Assets[i]
		if a.Drill == nil || a.Drill.Schedule == "" {
			continue
		}
		s, err := policy.ParseSchedule(a.Drill.Schedule)
		if err != nil {
			return nil, fmt.Errorf("asset %s: drill: %w", a.Name, err)
		}
		jobs = append(jobs, scheduler.Job{Asset: drillKey(a.Name), Spec: a.Drill.Schedule, Schedule: s})
	}
	return jobs, nil
}

func (d *daemon) logSchedule(jobs []scheduler.Job) {
	for _, j := range jobs {
		d.log.Info("scheduled", "asset", j.Asset, "schedule", j.Spec, "next", d.sched.NextFor(j.Asset).Format(time.RFC3339))
	}
}

func (d *daemon) loop(ctx context.Context, hup <-chan os.Signal) error {
	wake := time.NewTimer(0)
	defer wake.Stop()
	drain := time.NewTicker(d.o.drainInterval)
	defer drain.Stop()
	d.watch.kick(d.pol) // a first check at start, so metrics and alerts are current
	check := time.NewTicker(d.watch.interval)
	defer check.Stop()
	d.startDrain() // what piled up while no drainer ran
	for {
		d.dispatch(time.Now())
		wake.Reset(d.sleepFor(time.Now()))
		select {
		case <-ctx.Done():
			return d.shutdown()
		case <-hup:
			d.reload()
		case j := <-d.done:
			d.finished(j)
		case err := <-d.drained:
			d.drainFinished(err)
		case <-drain.C:
			d.startDrain()
		case <-check.C:
			d.watch.kick(d.pol)
		case <-wake.C:
		}
	}
}

// sleepFor is how long the loop may sleep: until the next slot, at most
// maxSleep.
func (d *daemon) sleepFor(now time.Time) time.Duration {
	next := d.sched.Next()
	if next.IsZero() {
		return maxSleep
	}
	return min(max(next.Sub(now), time.Millisecond), maxSleep)
}

// dispatch records the skipped slots, queues the due runs and starts as
// many as there are free workers.
func (d *daemon) dispatch(now time.Time) {
	runs, skips := d.sched.Due(now)
	for _, s := range skips {
		d.recordSkip(s, now)
	}
	d.pending = append(d.pending, runs...)
	for len(d.pending) > 0 && len(d.running) < d.o.jobs {
		r := d.pending[0]
		d.pending = d.pending[1:]
		d.start(r)
	}
}

func (d *daemon) recordSkip(s scheduler.Skip, now time.Time) {
	why := "the asset's previous run was still waiting for a free worker (--jobs)"
	if j := d.running[s.Asset]; j != nil {
		why = fmt.Sprintf("the asset's previous run (#%d, started %s) was still going", j.id, j.started.Format(time.RFC3339))
	}
	if s.Count > 1 {
		why = fmt.Sprintf("%d slots skipped: %s", s.Count, why)
	}
	kind := ""
	if a, err := d.pol.Asset(s.Asset); err == nil {
		kind = string(a.Kind)
	}
	rec := catalog.Run{Asset: s.Asset, Kind: kind, Trigger: string(scheduler.TriggerSchedule), Slot: s.Slot,
		Start: now, End: now, Result: catalog.Skipped, Error: why}
	if err := d.cat.Insert(context.Background(), &rec); err != nil {
		d.log.Error("record skipped run", "asset", s.Asset, "error", oneLine(err))
	}
	d.log.Warn("run skipped", "asset", s.Asset, "slot", s.Slot.Format(time.RFC3339), "reason", why)
}

// finished takes a job's end from its goroutine.
func (d *daemon) finished(j *job) {
	delete(d.running, j.rec.Asset)
	d.sched.Done(j.rec.Asset)
	d.watch.recordRun(j)
	attrs := []any{"asset", j.rec.Asset, "run", j.rec.ID, "result", j.rec.Result,
		"duration", j.rec.End.Sub(j.rec.Start).Round(time.Millisecond)}
	if j.rec.Snapshot != "" {
		attrs = append(attrs, "snapshot", j.rec.Snapshot[:min(len(j.rec.Snapshot), 8)], "bytes", j.rec.Bytes, "stored", j.rec.BytesStored)
	}
	if j.rec.Error != "" {
		attrs = append(attrs, "error", j.rec.Error)
	}
	if j.rec.Result == catalog.OK {
		d.log.Info("run ended", attrs...)
	} else {
		d.log.Warn("run ended", attrs...)
	}
}

// reload reads the policy again. A policy that does not load, or moves the
// state directory, is refused and the running one kept; a valid one
// replaces the schedules (runs going on continue).
func (d *daemon) reload() {
	p, err := policy.Load(d.g.configPath)
	if err != nil {
		d.log.Error("reload refused, the previous policy keeps running", "error", oneLine(err))
		return
	}
	if p.StateDir != d.pol.StateDir {
		d.log.Error("reload refused, the previous policy keeps running",
			"error", fmt.Sprintf("state_dir changed from %s to %s: restart lifeboat serve to move it", d.pol.StateDir, p.StateDir))
		return
	}
	jobs, err := d.jobsOf(p)
	if err != nil {
		d.log.Error("reload refused, the previous policy keeps running", "error", oneLine(err))
		return
	}
	if err := d.watch.reload(p); err != nil {
		d.log.Error("reload refused, the previous policy keeps running", "error", oneLine(err))
		return
	}
	d.sched.Load(jobs, time.Now(), nil)
	d.pol = p
	// Runs queued for an asset the policy no longer schedules are dropped.
	d.pending = slices.DeleteFunc(d.pending, func(r scheduler.Run) bool {
		if !slices.ContainsFunc(jobs, func(j scheduler.Job) bool { return j.Asset == r.Asset }) {
			d.sched.Done(r.Asset)
			return true
		}
		return false
	})
	d.log.Info("policy reloaded", "assets", len(p.Assets), "scheduled", len(jobs))
	d.logSchedule(jobs)
}

// startDrain sends what the copy queues hold, in the background, unless a
// drain is already going or every queue is empty (then it opens nothing,
// which keeps an idle daemon idle).
func (d *daemon) startDrain() {
	if d.draining {
		return
	}
	p := d.pol
	var copies []*policy.Repository
	for i := range p.Repositories {
		rp := &p.Repositories[i]
		if primaryOf(p, rp) == nil {
			continue
		}
		if queued, err := queueHasEntries(app.QueueDir(p, rp)); err != nil {
			d.log.Warn("read copy queue", "repository", rp.Name, "error", oneLine(err))
		} else if queued {
			copies = append(copies, rp)
		}
	}
	if len(copies) == 0 {
		return
	}
	d.draining = true
	go func() { d.drained <- d.g.drainQueues(d.drainCtx, p, copies, false) }()
}

func queueHasEntries(dir string) (bool, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	q, err := copyqueue.Open(dir)
	if err != nil {
		return false, err
	}
	es, err := q.Entries()
	return len(es) > 0, err
}

// drainFinished logs a drain's failure once, not at every tick while a
// copy stays out of reach, and its recovery.
func (d *daemon) drainFinished(err error) {
	d.draining = false
	switch {
	case err != nil && oneLine(err) != d.drainErr:
		d.drainErr = oneLine(err)
		d.log.Warn("copy queue not drained; retrying", "error", d.drainErr)
	case err == nil && d.drainErr != "":
		d.drainErr = ""
		d.log.Info("copy queues drained again")
	}
}

// shutdown stops starting runs, asks the running ones to stop, and kills
// those still going after --stop-timeout. Runs queued but not started are
// not recorded: their slots are made up at the next start.
func (d *daemon) shutdown() error {
	d.log.Info("stopping", "running", len(d.running), "stop_timeout", d.o.stopTimeout)
	for _, r := range d.pending {
		d.sched.Done(r.Asset)
	}
	d.pending = nil
	close(d.stop)
	d.drainCancel()
	bound := time.NewTimer(d.o.stopTimeout)
	defer bound.Stop()
	killed := 0
	for len(d.running) > 0 {
		select {
		case j := <-d.done:
			d.finished(j)
			if j.killed {
				killed++
			}
		case <-bound.C:
			d.log.Warn("runs still going at the stop bound: killing them", "runs", len(d.running))
			close(d.kill)
		}
	}
	if d.draining {
		select {
		case <-d.drained: // cancelled: a queue entry is removed only once sent
		case <-time.After(10 * time.Second):
		}
	}
	if killed > 0 {
		return fmt.Errorf("serve: stopped, but %d run(s) did not end within --stop-timeout %s and were killed (recorded as aborted)", killed, d.o.stopTimeout)
	}
	d.log.Info("stopped")
	return nil
}
