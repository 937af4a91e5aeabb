package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// checkTimeout bounds one health check.
const checkTimeout = 10 * time.Minute

// watcher is the daemon's eye on health: every check.interval it runs the
// same check as lifeboat check (Config.Check), in the background, and
// hands the outcome to the metrics and the alerts. Its fields are the
// loop's; a check's goroutine uses only what kick gave it, the metrics and
// the log.
type watcher struct {
	d         *Daemon
	ctx       context.Context // of the checks; cancelled at stop
	cancel    context.CancelFunc
	interval  time.Duration // the loop's to read
	metrics   *metrics.Metrics
	served    chan error
	stopServe context.CancelFunc
	listen    string // the metrics address in force

	notifier *alert.Notifier
	// checking is set while a check goes; checked receives its end.
	checking bool
	checked  chan struct{}
	// assets are the asset names with series, to forget the ones a reload
	// dropped.
	assets map[string]bool
}

func newWatcher(d *Daemon, p *policy.Policy) (*watcher, error) {
	w := &watcher{d: d, interval: checkInterval(p), metrics: d.cfg.Metrics, assets: map[string]bool{}, listen: p.MetricsListen,
		checked: make(chan struct{}, 1)}
	n, err := w.newNotifier(p)
	if err != nil {
		return nil, err
	}
	w.notifier = n
	for _, a := range p.Assets {
		w.assets[a.Name] = true
	}
	return w, nil
}

func checkInterval(p *policy.Policy) time.Duration {
	if iv := time.Duration(p.Check.Interval); iv > 0 {
		return iv
	}
	return policy.DefaultCheckInterval
}

// newNotifier makes the notifier of p's alerts; nil when it has none. A
// policy whose alert secrets are unset is refused.
func (w *watcher) newNotifier(p *policy.Policy) (*alert.Notifier, error) {
	if len(p.Alerts) == 0 {
		return nil, nil
	}
	return alert.New(p.Alerts, alert.Path(p.StateDir), alert.Options{Log: w.d.log, Now: w.d.clock.Now})
}

// start seeds the metrics from the catalog and serves them on the
// policy's metrics.listen, if any: a taken port stops the daemon at once.
func (w *watcher) start(ctx context.Context) error {
	w.ctx, w.cancel = context.WithCancel(ctx)
	if err := w.seed(ctx); err != nil {
		w.d.log.Warn("metrics: could not read past runs from the catalog", "error", errLine(err))
	}
	if w.listen == "" {
		return nil
	}
	srv, err := metrics.Listen(w.listen, w.metrics.Handler(), w.d.log)
	if err != nil {
		return err
	}
	w.served = make(chan error, 1)
	sctx, cancel := context.WithCancel(ctx)
	go func() { w.served <- srv.Serve(sctx) }()
	w.stopServe = cancel
	w.d.log.Info("metrics", "listen", srv.Addr().String())
	return nil
}

// seed loads the newest run of each asset and the newest drill from the
// catalog, so a restarted daemon exposes them at once.
func (w *watcher) seed(ctx context.Context) error {
	runs, err := w.d.cat.Runs(ctx, catalog.Filter{Limit: 2000})
	if err != nil {
		return err
	}
	for i := len(runs) - 1; i >= 0; i-- { // oldest first: the newest wins
		r := runs[i]
		if r.Result == catalog.Running || r.Kind == "drill" {
			continue
		}
		w.metrics.SeedRun(r.Asset, r.Kind, string(r.Result), r.Start, r.End, r.Bytes, r.BytesStored)
	}
	drills, err := w.d.cat.Drills(ctx, catalog.DrillFilter{Limit: 500})
	if err != nil {
		return err
	}
	done := map[string]bool{}
	for _, r := range drills { // newest first
		// An aborted drill shows nothing (RecordDrill): the newest
		// that ended is the one to show.
		if !done[r.Asset] && !r.Aborted {
			w.metrics.RecordDrill(r)
			done[r.Asset] = true
		}
	}
	return nil
}

// kick starts a check in the background unless one is going; checked
// receives its end.
func (w *watcher) kick(p *policy.Policy) {
	if w.d.cfg.Check == nil || w.checking {
		return
	}
	w.checking = true
	n := w.notifier
	go func() {
		defer func() { w.checked <- struct{}{} }()
		now := w.d.clock.Now()
		ctx, cancel := withDeadline(w.ctx, w.d.clock, now.Add(checkTimeout))
		defer cancel()
		results, err := w.d.cfg.Check(ctx, p, now)
		if err != nil {
			w.d.log.Warn("check could not run", "error", errLine(err))
			return
		}
		w.observe(results, now)
		if fleet := w.d.cfg.Alerts; fleet != nil {
			problems := alert.Problems(results)
			err := fleet(ctx, p, problems)
			switch {
			case err != nil && n != nil:
				// A catalog out of reach must not silence this host's
				// pages: it delivers its own problems, as without a fleet,
				// until the catalog takes them again.
				w.d.log.Warn("alerts not recorded in the fleet catalog; this agent delivers its own until it returns", "error", errLine(err))
				if err := n.Update(ctx, problems); err != nil {
					w.d.log.Warn("alerts not all delivered; retrying at the next check", "error", errLine(err))
				}
			case err != nil:
				w.d.log.Warn("alerts not recorded in the fleet catalog; retrying at the next check", "error", errLine(err))
			case n != nil:
				// The leader delivers again: what this agent opened itself
				// during an outage is resolved under its own key (the
				// leader's carry the host in theirs).
				if err := n.Update(ctx, nil); err != nil {
					w.d.log.Warn("alerts opened during the catalog's outage not all resolved; retrying at the next check", "error", errLine(err))
				}
			}
		} else if n != nil {
			if err := n.Update(ctx, alert.Problems(results)); err != nil {
				w.d.log.Warn("alerts not all delivered; retrying at the next check", "error", errLine(err))
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

// problems turns the failing results into alert problems.

// recordRun puts a finished backup or drill into the metrics.
func (w *watcher) recordRun(j *job) {
	if j.action == ActionDrill {
		if j.report != nil {
			w.metrics.RecordDrill(j.report)
		}
		return
	}
	if j.action == ActionPlatform { // its member drills are in the catalog, not in this child's result
		return
	}
	w.metrics.RecordRun(j.rec.Asset, j.rec.Kind, string(j.rec.Result), j.rec.Start, j.rec.End, j.rec.Bytes, j.rec.BytesStored)
}

// reload takes a new policy's alerts and check interval and forgets the
// assets it dropped. The metrics address cannot change without a restart.
func (w *watcher) reload(p *policy.Policy) error {
	if p.MetricsListen != w.listen {
		return fmt.Errorf("metrics.listen changed from %q to %q: restart lifeboat serve to move it", w.listen, p.MetricsListen)
	}
	n, err := w.newNotifier(p)
	if err != nil {
		return err
	}
	w.notifier = n // a check under way keeps the one it took
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
	w.interval = checkInterval(p)
	return nil
}

// stop cancels a check going and waits, at most until the clock reaches
// bound, for it to end: it may be writing the alert state.
func (w *watcher) stop(bound time.Time) {
	w.cancel()
	if !w.checking {
		return
	}
	t := w.d.clock.NewTimer(bound)
	defer t.Stop()
	select {
	case <-w.checked:
		w.checking = false
	case <-t.C():
	}
}

func (w *watcher) close() {
	if w.cancel != nil {
		w.cancel()
	}
	if w.stopServe != nil {
		w.stopServe()
		<-w.served
	}
}
