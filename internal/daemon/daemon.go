// Package daemon is lifeboat serve: it backs up each asset when its
// schedule says, between the asset's hooks, and runs its restore drills
// when theirs says; one run per asset at a time and at most Config.Jobs at
// once; it records every run in the catalog, makes up slots missed while
// it was down, drains the copy queues, and watches health (checks, metrics,
// alerts). docs/daemon.md states the rules for operators.
//
// The daemon carries nothing out itself: each backup or drill is a child
// handed to a Runner (the production one runs this program, as a person
// would by hand), which reports a typed Result the daemon records; the
// checks and the copy-queue drain are functions the program passes in.
// Time comes from a Clock, so tests run the daemon on a fake one.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// CheckFunc runs the checks of lifeboat check over every asset of p, as
// of now.
type CheckFunc func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error)

// DrainFunc sends what this host's copy queues of p hold to the copy
// repositories. It is called every DrainInterval, so an empty queue must
// cost little (a directory listing, no connection).
type DrainFunc func(ctx context.Context, p *policy.Policy) error

// Config is what a daemon is made of.
type Config struct {
	// Policy is the policy in force at start; LoadPolicy reads it again
	// on Reload.
	Policy     *policy.Policy
	LoadPolicy func() (*policy.Policy, error)
	// ConfigPath is the policy file, which hooks find in LIFEBOAT_CONFIG.
	ConfigPath string
	Log        *slog.Logger
	Clock      Clock // nil: System
	Runner     Runner
	// Catalog is where runs are recorded; the caller opens and closes it.
	Catalog *catalog.Catalog
	// Metrics receives runs, drills and checks; it is served on the
	// policy's metrics.listen. nil: a new set.
	Metrics *metrics.Metrics
	// Fleet runs this agent's part in a fleet (leadership and the fleet
	// duties); Alerts takes the checks' problems instead of the policy's
	// alert destinations (fleet.go). nil: a host on its own.
	Fleet  FleetFunc
	Alerts AlertFunc
	// Check and Drain are the daemon's background work besides runs; nil
	// leaves it out.
	Check CheckFunc
	Drain DrainFunc
	// Stream runs the policy's streams (WAL streaming); nil leaves them out.
	Stream StreamFunc
	// WALPush archives what wal-push hands over the state directory's
	// socket (walsock); nil: no socket, wal-push archives by itself.
	WALPush WALPushFunc
	// Runbook writes the runbook after every drill and policy reload
	// (documents.go); nil: none.
	Runbook DocumentFunc
	// Report writes the DR report at start, after every drill and policy
	// reload, and after a check once an hour; nil: none. ReportHere, when
	// set, says whether this agent writes it (in a fleet, the leader).
	Report     DocumentFunc
	ReportHere func() bool
	// Jobs is the most runs at once; StopTimeout how long runs get to stop
	// before they are killed; DrainInterval how often the copy queues are
	// drained.
	Jobs          int
	StopTimeout   time.Duration
	DrainInterval time.Duration
}

// Daemon is lifeboat serve. Everything but the runs' own goroutines and
// the background checks and drains runs on Run's goroutine, so none of its
// state needs a lock.
type Daemon struct {
	cfg   Config
	log   *slog.Logger
	clock Clock
	cat   *catalog.Catalog
	sched *scheduler.Scheduler
	pol   *policy.Policy
	jobs  []scheduler.Job

	pending []scheduler.Run // due, waiting for a free worker
	running map[string]*job // by scheduler key (asset, or its drill key)
	done    chan *job
	// stop is closed when shutdown begins (children are asked to stop),
	// kill when its bound is up (they are killed with their process
	// groups).
	stop, kill chan struct{}
	reload     chan struct{}

	watch           *watcher
	streams         *streams
	runbook, report *docWriter
	// current is pol for the WAL socket's goroutines.
	current atomic.Pointer[policy.Policy]

	drainCtx    context.Context
	drainCancel context.CancelFunc
	draining    bool
	drained     chan error
	drainErr    string // the last drain failure, to log a change once
	// nextDrain and nextCheck are when the copy queues are drained and
	// the health checked next.
	nextDrain, nextCheck time.Time

	// testIdle, set by tests only, is called each time the loop has done
	// what was due at now and is about to wait.
	testIdle func(now time.Time)
}

// maxSleep bounds the loop's sleep, so a wall clock stepped forward (NTP,
// a resumed host) delays a slot by at most this.
const maxSleep = time.Minute

// backgroundStopWait is how long a shutdown waits for a cancelled drain
// and check to end.
const backgroundStopWait = 10 * time.Second

// reportRefresh is how often, at most, serve writes the DR report anew
// after a check when no drill or reload asked for it: its backup runs
// change with every backup, and hourly keeps it current enough to read.
const reportRefresh = time.Hour

// New makes a daemon of cfg. It reads the schedules and the alerts of the
// policy, and refuses a policy whose schedules do not parse or whose
// alerts cannot be sent.
func New(cfg Config) (*Daemon, error) {
	if cfg.Policy == nil || cfg.Catalog == nil || cfg.Runner == nil || cfg.LoadPolicy == nil {
		return nil, errors.New("daemon: Policy, LoadPolicy, Catalog and Runner are required")
	}
	if cfg.Jobs < 1 || cfg.StopTimeout <= 0 || cfg.DrainInterval <= 0 {
		return nil, errors.New("daemon: Jobs, StopTimeout and DrainInterval must be positive")
	}
	if cfg.Clock == nil {
		cfg.Clock = System
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New()
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, clock: cfg.Clock, cat: cfg.Catalog, sched: scheduler.New(), pol: cfg.Policy,
		running: map[string]*job{}, done: make(chan *job), stop: make(chan struct{}), kill: make(chan struct{}),
		reload: make(chan struct{}, 1), drained: make(chan error, 1)}
	d.current.Store(cfg.Policy)
	var err error
	if d.jobs, err = Jobs(cfg.Policy); err != nil {
		return nil, err
	}
	if d.watch, err = newWatcher(d, cfg.Policy); err != nil {
		return nil, err
	}
	return d, nil
}

// Reload asks the daemon to read the policy again (SIGHUP). It does not
// wait; reloads asked for while one is pending are one reload.
func (d *Daemon) Reload() {
	select {
	case d.reload <- struct{}{}:
	default:
	}
}

// Run serves until ctx is cancelled, then stops: no new runs, running
// ones asked to stop and, after StopTimeout, killed. It returns nil when
// everything stopped in time, an error when it had to kill. Run is called
// once.
func (d *Daemon) Run(ctx context.Context) error {
	// Records are written with a context that outlives the shutdown
	// signal: the end of an aborted run must still be recorded.
	bg := context.WithoutCancel(ctx)
	now := d.clock.Now()
	last, err := d.lastRuns(bg, now)
	if err != nil {
		return err
	}
	d.sched.Load(d.jobs, now, last)
	if err := d.watch.start(bg); err != nil {
		return err
	}
	defer d.watch.close()
	d.drainCtx, d.drainCancel = context.WithCancel(bg)
	defer d.drainCancel()
	d.runbook = &docWriter{what: "runbook", path: func(p *policy.Policy) string { return p.Runbook.Path },
		write: d.cfg.Runbook, log: d.log, clock: d.clock, ctx: d.drainCtx}
	defer d.runbook.wait()
	d.report = &docWriter{what: "DR report", path: func(p *policy.Policy) string { return p.Report.Path },
		here: d.cfg.ReportHere, every: reportRefresh, write: d.cfg.Report, log: d.log, clock: d.clock, ctx: d.drainCtx}
	defer d.report.wait()
	d.runbook.kick(d.pol)
	d.report.kick(d.pol)
	d.streams = &streams{run: d.cfg.Stream, parent: bg, log: d.log}
	d.streams.start(d.pol)
	defer d.streams.stop(backgroundStopWait)
	defer d.startFleet(bg)()
	defer d.serveWALSocket(ctx)()
	d.log.Info("serving", "policy", d.cfg.ConfigPath, "assets", len(d.pol.Assets), "scheduled", len(d.jobs),
		"catalog", catalog.Path(d.pol.StateDir), "jobs", d.cfg.Jobs)
	d.logSchedule()
	return d.loop(ctx)
}

// lastRuns reads from the catalog where each asset's schedule stands: the
// slot of its newest scheduled run, and whether that run served it.
func (d *Daemon) lastRuns(ctx context.Context, now time.Time) (map[string]scheduler.Last, error) {
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

// LockStateDir makes the caller the only daemon of a state directory (two
// would run every job twice and close each other's runs as aborted), until
// it calls the function returned. The lock is the kernel's: a daemon that
// dies lets go.
func LockStateDir(dir string) (func(), error) {
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

// DrillSuffix makes an asset's drill a job of its own in the scheduler and
// the catalog: "ledger#drill". No asset name holds a '#'.
const DrillSuffix = "#drill"

// DrillKey is the name of an asset's drill job.
func DrillKey(asset string) string { return asset + DrillSuffix }

// Jobs are the schedules of p: each asset's backups, then its drills.
func Jobs(p *policy.Policy) ([]scheduler.Job, error) {
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
		if a.Drill == nil || a.Drill.Schedule == "" || !drillsHere(p) {
			continue
		}
		s, err := policy.ParseSchedule(a.Drill.Schedule)
		if err != nil {
			return nil, fmt.Errorf("asset %s: drill: %w", a.Name, err)
		}
		jobs = append(jobs, scheduler.Job{Asset: DrillKey(a.Name), Spec: a.Drill.Schedule, Schedule: s})
	}
	if pd := p.PlatformDrill; pd != nil && pd.Schedule != "" && drillsHere(p) {
		s, err := policy.ParseSchedule(pd.Schedule)
		if err != nil {
			return nil, fmt.Errorf("platform_drill: %w", err)
		}
		jobs = append(jobs, scheduler.Job{Asset: PlatformKey, Spec: pd.Schedule, Schedule: s})
	}
	return jobs, nil
}

// PlatformKey is the platform exercise's job in the scheduler and the
// catalog's runs (lifeboat drill --platform, as platform_drill says). No
// asset name holds a '#'.
const PlatformKey = "#platform"

func (d *Daemon) logSchedule() {
	for _, j := range d.jobs {
		d.log.Info("scheduled", "asset", j.Asset, "schedule", j.Spec, "next", d.sched.NextFor(j.Asset).Format(time.RFC3339))
	}
}

func (d *Daemon) loop(ctx context.Context) error {
	now := d.clock.Now()
	d.watch.kick(d.pol) // a first check at start, so metrics and alerts are current
	d.nextCheck = now.Add(d.watch.interval)
	d.startDrain() // what piled up while no drainer ran
	d.nextDrain = now.Add(d.cfg.DrainInterval)
	for {
		now = d.clock.Now()
		// A drain due while the last one still goes starts when it ends.
		if !now.Before(d.nextDrain) && !d.draining {
			d.startDrain()
			d.nextDrain = now.Add(d.cfg.DrainInterval)
		}
		if !now.Before(d.nextCheck) && !d.watch.checking { // a check going: when it ends
			d.watch.kick(d.pol)
			d.nextCheck = now.Add(d.watch.interval)
		}
		d.dispatch(now)
		wake := d.clock.NewTimer(d.wakeAt(now))
		if d.testIdle != nil {
			d.testIdle(now)
		}
		select {
		case <-ctx.Done():
			wake.Stop()
			return d.shutdown()
		case <-d.reload:
			d.reloadPolicy()
		case j := <-d.done:
			d.finished(j)
		case err := <-d.drained:
			d.drainFinished(err)
		case <-d.watch.checked:
			d.watch.checking = false
			d.report.refresh(d.pol) // the backup runs it lists
		case <-wake.C():
		}
		wake.Stop()
	}
}

// wakeAt is when the loop must look again: the next slot, drain or check,
// and at most maxSleep from now.
func (d *Daemon) wakeAt(now time.Time) time.Time {
	t := now.Add(maxSleep)
	drain, check := d.nextDrain, d.nextCheck
	if d.draining { // the drain's end wakes the loop
		drain = time.Time{}
	}
	if d.watch.checking { // so does the check's
		check = time.Time{}
	}
	for _, u := range []time.Time{d.sched.Next(), drain, check} {
		if !u.IsZero() && u.Before(t) {
			t = u
		}
	}
	return t
}

// dispatch records the skipped slots, queues the due runs and starts as
// many as there are free workers.
func (d *Daemon) dispatch(now time.Time) {
	runs, skips := d.sched.Due(now)
	for _, s := range skips {
		d.recordSkip(s, now)
	}
	d.pending = append(d.pending, runs...)
	for len(d.pending) > 0 && len(d.running) < d.cfg.Jobs {
		r := d.pending[0]
		d.pending = d.pending[1:]
		d.start(r)
	}
}

func (d *Daemon) recordSkip(s scheduler.Skip, now time.Time) {
	why := "the asset's previous run was still waiting for a free worker (--jobs)"
	if j := d.running[s.Asset]; j != nil {
		why = fmt.Sprintf("the asset's previous run (#%d, started %s) was still going", j.id, j.started.Format(time.RFC3339))
	}
	if s.Count > 1 {
		why = fmt.Sprintf("%d slots skipped: %s", s.Count, why)
	}
	kind := ""
	if name, isDrill := strings.CutSuffix(s.Asset, DrillSuffix); isDrill || s.Asset == PlatformKey {
		kind = "drill"
	} else if a, err := d.pol.Asset(name); err == nil {
		kind = string(a.Kind)
	}
	rec := catalog.Run{Asset: s.Asset, Kind: kind, Trigger: string(scheduler.TriggerSchedule), Slot: s.Slot,
		Start: now, End: now, Result: catalog.Skipped, Error: why}
	if err := d.cat.Insert(context.Background(), &rec); err != nil {
		d.log.Error("record skipped run", "asset", s.Asset, "error", errLine(err))
	}
	d.log.Warn("run skipped", "asset", s.Asset, "slot", s.Slot.Format(time.RFC3339), "reason", why)
}

// finished takes a run's end from its goroutine.
func (d *Daemon) finished(j *job) {
	delete(d.running, j.rec.Asset)
	d.sched.Done(j.rec.Asset)
	d.watch.recordRun(j)
	if j.action != ActionBackup {
		d.runbook.kick(d.pol) // the last drill and the forecast changed
		d.report.kick(d.pol)
	}
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

// reloadPolicy reads the policy again. A policy that does not load, or
// moves the state directory, is refused and the running one kept; a valid
// one replaces the schedules (runs going on continue).
func (d *Daemon) reloadPolicy() {
	refuse := func(err error) {
		d.log.Error("reload refused, the previous policy keeps running", "error", errLine(err))
	}
	p, err := d.cfg.LoadPolicy()
	if err != nil {
		refuse(err)
		return
	}
	if p.StateDir != d.pol.StateDir {
		refuse(fmt.Errorf("state_dir changed from %s to %s: restart lifeboat serve to move it", d.pol.StateDir, p.StateDir))
		return
	}
	jobs, err := Jobs(p)
	if err != nil {
		refuse(err)
		return
	}
	if err := d.watch.reload(p); err != nil {
		refuse(err)
		return
	}
	now := d.clock.Now()
	d.sched.Load(jobs, now, nil)
	d.pol, d.jobs = p, jobs
	d.current.Store(p)
	d.nextCheck = now.Add(d.watch.interval)
	d.streams.restart(p)
	// Runs queued for an asset the policy no longer schedules are dropped.
	d.pending = slices.DeleteFunc(d.pending, func(r scheduler.Run) bool {
		if !slices.ContainsFunc(jobs, func(j scheduler.Job) bool { return j.Asset == r.Asset }) {
			d.sched.Done(r.Asset)
			return true
		}
		return false
	})
	d.runbook.kick(p)
	d.report.kick(p)
	d.log.Info("policy reloaded", "assets", len(p.Assets), "scheduled", len(jobs))
	d.logSchedule()
}

// startDrain sends what the copy queues hold, in the background, unless a
// drain is already going.
func (d *Daemon) startDrain() {
	if d.draining || d.cfg.Drain == nil {
		return
	}
	d.draining = true
	ctx, p := d.drainCtx, d.pol
	go func() { d.drained <- d.cfg.Drain(ctx, p) }()
}

// drainFinished logs a drain's failure once, not at every tick while a
// copy stays out of reach, and its recovery.
func (d *Daemon) drainFinished(err error) {
	d.draining = false
	switch {
	case err != nil && errLine(err) != d.drainErr:
		d.drainErr = errLine(err)
		d.log.Warn("copy queue not drained; retrying", "error", d.drainErr)
	case err == nil && d.drainErr != "":
		d.drainErr = ""
		d.log.Info("copy queues drained again")
	}
}

// shutdown stops starting runs, asks the running ones to stop, and kills
// those still going after StopTimeout. Runs queued but not started are
// not recorded: their slots are made up at the next start.
func (d *Daemon) shutdown() error {
	d.log.Info("stopping", "running", len(d.running), "stop_timeout", d.cfg.StopTimeout)
	for _, r := range d.pending {
		d.sched.Done(r.Asset)
	}
	d.pending = nil
	// The bound counts from the moment the runs are asked to stop.
	bound := d.clock.NewTimer(d.clock.Now().Add(d.cfg.StopTimeout))
	defer bound.Stop()
	close(d.stop)
	d.drainCancel()
	d.watch.cancel()
	killed := 0
	expired := bound.C()
	for len(d.running) > 0 {
		select {
		case j := <-d.done:
			d.finished(j)
			if j.killed {
				killed++
			}
		case <-expired:
			expired = nil
			d.log.Warn("runs still going at the stop bound: killing them", "runs", len(d.running))
			close(d.kill)
		}
	}
	// The drain and the check are cancelled, and waited for a little: a
	// queue entry is removed only once sent, the alert state is written
	// whole.
	bg := d.clock.Now().Add(backgroundStopWait)
	if d.draining {
		t := d.clock.NewTimer(bg)
		select {
		case <-d.drained:
		case <-t.C():
		}
		t.Stop()
	}
	d.watch.stop(bg)
	if killed > 0 {
		return fmt.Errorf("serve: stopped, but %d run(s) did not end within --stop-timeout %s and were killed (recorded as aborted)", killed, d.cfg.StopTimeout)
	}
	d.log.Info("stopped")
	return nil
}
