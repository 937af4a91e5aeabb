package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// drillSuffix makes an asset's drill a job of its own in the scheduler and
// the catalog: "ledger#drill". No asset name holds a '#'.
const drillSuffix = "#drill"

func drillKey(asset string) string { return asset + drillSuffix }

// watcher is the daemon's eye on health: every check.interval it runs the
// same check as lifeboat check, in the background, and hands the outcome
// to the metrics and the alerts.
type watcher struct {
	d         *daemon
	ctx       context.Context
	interval  time.Duration
	metrics   *metrics.Metrics
	served    chan error
	stopServe context.CancelFunc

	mu       sync.Mutex // guards notifier, checking and repos
	notifier *alert.Notifier
	checking bool
	// repos are the repositories the checks opened, kept from one check to
	// the next (only one check runs at a time); a reload empties it.
	repos repoCache
	// assets are the asset names with series, to forget the ones a reload
	// dropped.
	assets map[string]bool
}

func newWatcher(ctx context.Context, d *daemon, p *policy.Policy) (*watcher, error) {
	w := &watcher{d: d, ctx: ctx, interval: time.Duration(p.Check.Interval), metrics: metrics.New(), assets: map[string]bool{},
		repos: app.NewPool()}
	if w.interval <= 0 {
		w.interval = policy.DefaultCheckInterval
	}
	n, err := newNotifier(p, d.log)
	if err != nil {
		return nil, err
	}
	w.notifier = n
	if err := w.seed(ctx); err != nil {
		d.log.Warn("metrics: could not read past runs from the catalog", "error", oneLine(err))
	}
	if p.MetricsListen != "" {
		// Listening first: a taken port stops the daemon at once.
		srv, err := metrics.Listen(p.MetricsListen, w.metrics.Handler(), d.log)
		if err != nil {
			return nil, err
		}
		w.served = make(chan error, 1)
		sctx, cancel := context.WithCancel(ctx)
		go func() { w.served <- srv.Serve(sctx) }()
		w.stopServe = cancel
		d.log.Info("metrics", "listen", srv.Addr().String())
	}
	for _, a := range p.Assets {
		w.assets[a.Name] = true
	}
	return w, nil
}

func newNotifier(p *policy.Policy, log *slog.Logger) (*alert.Notifier, error) {
	if len(p.Alerts) == 0 {
		return nil, nil
	}
	return alert.New(p.Alerts, filepath.Join(p.StateDir, alertStateFile), alert.Options{Log: log})
}

// seed loads the newest run of each asset and the newest drill from the
// catalog, so a restarted daemon exposes them at once.
func (w *watcher) seed(ctx context.Context) error {
	runs, err := w.d.cat.Runs(ctx, catalog.Filter{Limit: 2000})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for i := len(runs) - 1; i >= 0; i-- { // oldest first: the newest wins
		r := runs[i]
		if r.Result == catalog.Running || r.Kind == "drill" {
			continue
		}
		w.metrics.SeedRun(r.Asset, r.Kind, string(r.Result), r.Start, r.End, r.Bytes, r.BytesStored)
		seen[r.Asset] = true
	}
	drills, err := w.d.cat.Drills(ctx, catalog.DrillFilter{Limit: 500})
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, r := range drills { // newest first
		if !done[r.Asset] {
			w.metrics.RecordDrill(r)
			done[r.Asset] = true
		}
	}
	return nil
}

// kick starts a check unless one is going.
func (w *watcher) kick(p *policy.Policy) {
	w.mu.Lock()
	if w.checking {
		w.mu.Unlock()
		return
	}
	w.checking = true
	n, repos := w.notifier, w.repos
	w.mu.Unlock()
	go func() {
		defer func() {
			w.mu.Lock()
			w.checking = false
			w.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(w.ctx, 10*time.Minute)
		defer cancel()
		now := time.Now()
		results, err := w.d.g.evaluateHealth(ctx, p, now, repos)
		if err != nil {
			w.d.log.Warn("check could not run", "error", oneLine(err))
			return
		}
		w.observe(results, now)
		if n != nil {
			if err := n.Update(ctx, problems(results)); err != nil {
				w.d.log.Warn("alerts not all delivered; retrying at the next check", "error", oneLine(err))
			}
		}
	}()
}

// observe puts a check's results into the metrics and logs failures.
func (w *watcher) observe(rs []health.Result, now time.Time) {
	m := w.metrics
	for _, r := range rs {
		name := r.Asset
		if name == "" {
			name = "_"
		}
		check := r.Check
		if r.Subject != "" {
			check += ":" + r.Subject
		}
		m.SetCheck(name, check, !r.OK)
		switch {
		case r.Check == health.CheckWALLag && r.Value != nil:
			m.SetWALLag(r.Asset, *r.Value)
		case r.Check == health.CheckCopy && r.Copy != nil:
			m.SetCopyLag(r.Asset, r.Subject, r.Copy.WALFiles, r.Copy.MissingSnapshots, r.Copy.WALSeconds)
		}
		if !r.OK {
			w.d.log.Warn("check failed", "asset", r.Asset, "check", check, "problem", r.Message)
		}
	}
	m.CheckRan(now)
}

// recordRun puts a finished backup or drill into the metrics.
func (w *watcher) recordRun(j *job) {
	if j.drill {
		if j.report != nil {
			w.metrics.RecordDrill(j.report)
		}
		return
	}
	w.metrics.RecordRun(j.rec.Asset, j.rec.Kind, string(j.rec.Result), j.rec.Start, j.rec.End, j.rec.Bytes, j.rec.BytesStored)
}

// reload takes a new policy's alerts and forgets the assets it dropped.
// The metrics address cannot change without a restart.
func (w *watcher) reload(p *policy.Policy) error {
	if p.MetricsListen != w.d.pol.MetricsListen {
		return fmt.Errorf("metrics.listen changed from %q to %q: restart lifeboat serve to move it", w.d.pol.MetricsListen, p.MetricsListen)
	}
	n, err := newNotifier(p, w.d.log)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.notifier = n
	w.repos = app.NewPool() // a check under way keeps the pool it took
	w.mu.Unlock()
	keep := map[string]bool{}
	for _, a := range p.Assets {
		keep[a.Name] = true
	}
	for a := range w.assets {
		if !keep[a] {
			w.metrics.Forget(a)
		}
	}
	// Copies an asset no longer uses would keep their last lag.
	for _, old := range w.d.pol.Assets {
		na, err := p.Asset(old.Name)
		if err != nil {
			continue
		}
		for _, r := range old.Repositories[min(1, len(old.Repositories)):] {
			if !slices.Contains(na.Repositories[min(1, len(na.Repositories)):], r) {
				w.metrics.ForgetCopy(old.Name, r)
			}
		}
	}
	w.assets = keep
	w.interval = time.Duration(p.Check.Interval)
	return nil
}

func (w *watcher) close() {
	if w.stopServe != nil {
		w.stopServe()
		<-w.served
	}
}

// drill runs a scheduled drill as `lifeboat drill ASSET --json` in a child
// and reads its report; the child records the report itself.
func (d *daemon) drill(j *job) {
	asset := strings.TrimSuffix(j.rec.Asset, drillSuffix)
	stdout, stderr := newOutputBuffer(outputLimit), newOutputBuffer(4<<10)
	cmd := exec.Command(d.exe, "-c", d.config, "drill", asset, "--json", "--trigger", "schedule")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = os.Environ()
	st := supervise(cmd, d.stop, d.kill, 0, false)
	j.killed = st.killed
	if rep, err := evidence.Unmarshal([]byte(stdout.String())); err == nil {
		j.report = rep
		j.rec.Snapshot, j.rec.Bytes = rep.Snapshot, rep.Bytes
		j.rec.Output = fmt.Sprintf("drill %s: RTO %s, RPO %s", rep.ID, fmtSecs(rep.RTOSeconds), fmtSecs(rep.RPOSeconds))
	}
	switch {
	case st.err == nil:
		j.rec.Result = catalog.OK
	case st.stopped || st.killed:
		j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped during the drill"
	default:
		j.rec.Result = catalog.Failed
		j.rec.Error = strings.TrimPrefix(lastLine(stderr.tailString()), "lifeboat: ")
		if j.rec.Error == "" {
			j.rec.Error = "drill " + st.describe(0)
		}
	}
}
