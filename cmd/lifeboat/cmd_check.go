package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

type checkOptions struct {
	json  bool
	alert bool
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that every asset is protected as the policy says",
		Long: `Check every asset of the policy and exit 1 when anything fails:

  backup      a backup started at or after the newest scheduled slot that is
              more than check.grace (default 1h) old: one missed run fails
  wal_lag     PostgreSQL assets: WAL archived within the tier's RPO, and the
              archiver not failing (asked of the server when it can be
              reached; otherwise the age of the newest archived WAL)
  setup       PostgreSQL assets: lifeboat doctor's read-only probes pass
              (pgdata is the server's, clocks agree, the server's user can
              read the policy and keys); a failing archive settings probe
              fails wal_lag
  copy        every copy repository holds the snapshots older than the grace
              and the WAL older than the RPO
  drill       with a drill schedule: a passing drill since the newest drill
              slot more than the grace old
  verify      the last lifeboat verify of each repository was clean
  repository  every repository can be read
  authentic   no object read for these checks (snapshot manifests, the WAL
              and identity listings) failed its authentication: one planted
              by a credential without the key is skipped by every reader,
              and named here (lifeboat verify finds them all); one overwritten
              in place is read from its earlier authentic version, and named
              here until lifeboat verify --repair makes that version current
  versioning  S3 repositories: the bucket keeps earlier versions, so that an
              object overwritten in place can come back
  role        repositories with a role in the policy: the credential has no
              more rights than that role (a canary object is written and the
              store asked to delete it and change its lock), nor fewer

With --alert the problems found are also sent to the policy's alerts (and
resolved when they clear), as lifeboat serve does every check.interval.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().BoolVar(&o.alert, "alert", false, "send the problems to the policy's alerts")
	return cmd
}

func runCheck(ctx context.Context, g *globalOptions, o checkOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	pool := app.NewPool()
	defer pool.Close()
	results, err := g.evaluateHealth(ctx, p, time.Now(), pool)
	if err != nil {
		return err
	}
	if o.alert {
		if err := sendAlerts(ctx, g, p, results); err != nil {
			return err
		}
	}
	if o.json {
		if err := g.printJSON(results); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ASSET\tCHECK\tSTATUS\tDETAIL")
		for _, r := range results {
			status := "ok"
			if !r.OK {
				status = "FAIL"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(r.Asset), checkName(r), status, r.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if err := printFleetCheck(ctx, g, p, pool); err != nil {
			return err
		}
	}
	if n := failing(results); n > 0 {
		return errors.New(plural(n, "check") + " failed")
	}
	return nil
}

func checkName(r health.Result) string {
	if r.Subject != "" {
		return r.Check + " " + r.Subject
	}
	return r.Check
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func failing(rs []health.Result) int {
	n := 0
	for _, r := range rs {
		if !r.OK {
			n++
		}
	}
	return n
}

// evaluateHealth judges every asset of p, keeping repositories open in
// pool from one check to the next.
func (g *globalOptions) evaluateHealth(ctx context.Context, p *policy.Policy, now time.Time, pool repoCache) ([]health.Result, error) {
	return app.New(p, app.Options{Log: g.log, Pool: pool, Now: g.now(time.Now)}).Health(ctx, now)
}

// alertStateFile is where the alert state lives in the state directory.
const alertStateFile = "alerts.json"

// sendAlerts hands the check's problems to the policy's alerts, which
// fire, repeat and resolve them against the state kept in state_dir.
func sendAlerts(ctx context.Context, g *globalOptions, p *policy.Policy, rs []health.Result) error {
	if len(p.Alerts) == 0 {
		return usagef("--alert: the policy has no alerts")
	}
	// One sender of alerts per state directory: the alert state is not
	// shared, and lifeboat serve, when it runs, sends them itself.
	unlock, err := daemon.LockStateDir(p.StateDir)
	if err != nil {
		return fmt.Errorf("--alert: %w (lifeboat serve sends the alerts while it runs)", err)
	}
	defer unlock()
	n, err := alert.New(p.Alerts, filepath.Join(p.StateDir, alertStateFile), alert.Options{Log: g.log})
	if err != nil {
		return err
	}
	return n.Update(ctx, alert.Problems(rs))
}
