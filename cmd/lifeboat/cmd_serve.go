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
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/walsock"
)

type serveOptions struct {
	jobs          int
	stopTimeout   time.Duration
	drainInterval time.Duration
	// http is where the dashboard is served as well; "" for nowhere.
	http string
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
0 when everything stopped in time. See docs/daemon.md.

--http ADDR also serves the dashboard there, as lifeboat web does (TLS and
sign-in as the policy's web section says); see docs/web.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	cmd.Flags().IntVar(&o.jobs, "jobs", 2, "most runs at once, over all assets")
	cmd.Flags().DurationVar(&o.stopTimeout, "stop-timeout", time.Minute, "on SIGTERM, how long running backups get to stop before they are killed")
	cmd.Flags().DurationVar(&o.drainInterval, "drain-interval", 10*time.Second, "how often to look at the copy queues")
	cmd.Flags().StringVar(&o.http, "http", "", "also serve the dashboard (as lifeboat web) on ADDR, host:port")
	return cmd
}

// runServe wires the daemon (internal/daemon): this program as the runner
// of its backups and drills, the application service's health checks,
// the copy-queue drain, the policy file for reloads, and SIGHUP.
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
	g.log = log
	// Caught from the start: a reload sent while starting would otherwise
	// end the process (SIGHUP's default). It is served once the daemon runs.
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
	unlock, err := daemon.LockStateDir(p.StateDir)
	if err != nil {
		return err
	}
	defer unlock()
	cat, err := catalog.Open(context.WithoutCancel(ctx), catalog.Path(p.StateDir), app.CatalogOptions(p)...)
	if err != nil {
		return err
	}
	defer cat.Close()
	clock := daemon.System
	mets := metrics.New()
	fl, err := openFleet(ctx, p, log, clock.Now, mets)
	if err != nil {
		return err
	}
	if fl.store != nil {
		defer fl.store.Close()
	}
	// The outbox goes to the fleet catalog while the daemon runs
	// (docs/fleet.md); what is left is shipped by the next start.
	stopShipper := startShipper(ctx, app.New(p, app.Options{Log: log}))
	defer stopShipper()
	// The checks and drains run on the application service of the policy
	// in force, with one pool of open repositories across them and across
	// reloads (a changed repository is opened anew).
	pool := app.NewPool()
	defer pool.Close()
	service := func(p *policy.Policy) *app.Service {
		return app.New(p, app.Options{Log: log, Now: g.now(clock.Now), Pool: pool})
	}
	d, err := daemon.New(daemon.Config{
		Policy: p, LoadPolicy: func() (*policy.Policy, error) { return auditReload(ctx, g, p, config) }, ConfigPath: config, Log: log, Clock: clock, Catalog: cat, Metrics: mets,
		Runner: &daemon.ExecRunner{Exe: exe, Config: config, Env: []string{envServeRun + "=1"}, Clock: clock},
		Check: func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error) {
			svc := service(p)
			svc.FlushAudit(ctx) // a minute of archiving that no later push recorded
			return svc.Health(ctx, now)
		},
		Fleet: fl.run, Alerts: fl.alerts,
		Drain:  func(ctx context.Context, p *policy.Policy) error { return drainQueued(ctx, service(p)) },
		Stream: func(ctx context.Context, p *policy.Policy) error { return service(p).StreamAll(ctx) },
		Runbook: func(ctx context.Context, p *policy.Policy, now time.Time) error {
			return service(p).WriteRunbook(ctx, now)
		},
		Report: func(ctx context.Context, p *policy.Policy, now time.Time) error {
			return service(p).WriteReport(ctx, now)
		},
		ReportHere: fl.leads, // nil without a fleet: this host writes it
		WALPush: func(ctx context.Context, p *policy.Policy, req walsock.Request, f *os.File) walsock.Reply {
			return walPushReply(service(p).ArchiveLog(ctx, req.Asset, req.Repository, req.Name, f))
		},
		Jobs: o.jobs, StopTimeout: o.stopTimeout, DrainInterval: o.drainInterval,
	})
	if err != nil {
		return err
	}
	if o.http != "" {
		// The dashboard shows the policy serve started with: a reload
		// changes the schedules, not the dashboard (restart for that).
		dash, err := openDashboard(g, service(p), o.http)
		if err != nil {
			return err
		}
		webCtx, stopWeb := context.WithCancel(ctx)
		webDone := make(chan struct{})
		go func() {
			defer close(webDone)
			// A dashboard that fails leaves the backups running: said in
			// the log, not turned into the daemon's failure.
			if err := dash.serve(webCtx); err != nil {
				log.Error("serve: the dashboard stopped", "error", err)
			}
		}()
		defer func() {
			stopWeb()
			<-webDone
		}()
	}
	go func() {
		for range hup {
			d.Reload()
		}
	}()
	return d.Run(ctx)
}

// drainQueued sends what the copy queues of this host hold, as lifeboat
// copy --queued does, leaving a queue another drainer holds to it. A queue
// that is empty costs a directory listing: nothing is opened for it.
func drainQueued(ctx context.Context, svc *app.Service) error {
	p := svc.Policy
	var copies []*policy.Repository
	var errs []error
	for i := range p.Repositories {
		rp := &p.Repositories[i]
		if p.PrimaryOf(rp.Name) == nil {
			continue
		}
		if queued, err := queueHasEntries(app.QueueDir(p, rp)); err != nil {
			errs = append(errs, fmt.Errorf("read copy queue %s: %w", rp.Name, err))
		} else if queued {
			copies = append(copies, rp)
		}
	}
	if len(copies) > 0 {
		errs = append(errs, svc.DrainQueues(ctx, copies, false))
	}
	return errors.Join(errs...)
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
