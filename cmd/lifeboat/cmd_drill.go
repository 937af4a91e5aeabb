package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
)

type drillOptions struct {
	asset      string
	time       string
	random     bool
	latest     bool
	snapshot   string
	repository string
	runAs      string
	workDir    string
	workers    int
	json       bool
	trigger    string
}

func newDrillCommand(g *globalOptions) *cobra.Command {
	var o drillOptions
	cmd := &cobra.Command{
		Use:   "drill ASSET [--time T | --random-point | --latest | --snapshot ID] [--repository NAME]",
		Short: "Rehearse a restore: restore into a throwaway target, check it, measure RTO and RPO",
		Long: `Restore ASSET into a throwaway target on this machine and prove it works:
PostgreSQL into a fresh data directory on a private socket (WAL replayed to
the target, server started as an unprivileged user); pg_dump into a fresh
cluster through pg_restore; SQLite into a temporary file; files and git into
a temporary directory. Then run the integrity checks (pg_amcheck, PRAGMA
integrity_check, git fsck) and the asset's validation queries from the
policy, measure the recovery time by phase and the data lost (RPO), compare
both with the asset's tier, and record the report in the catalog and in the
repository. The target is removed whatever happened. Exit status 1 when the
drill fails.

Without a point flag the drill uses the policy's drill.point (latest when
unset). --latest plays a failure now: RPO is the time since the last
transaction that came back.`,
		Args: exactArgs(1, "ASSET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = args[0]
			return runDrillCommand(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.time, "time", "", "restore to this moment (with a zone)")
	f.BoolVar(&o.random, "random-point", false, "restore to a random moment the repository can restore")
	f.BoolVar(&o.latest, "latest", false, "restore to the newest point (the default unless the policy says random)")
	f.StringVar(&o.snapshot, "snapshot", "", "restore this snapshot (id or prefix) to its own consistent point")
	f.StringVar(&o.repository, "repository", "", "drill from this repository of the asset (a copy) instead of the policy's choice")
	f.StringVar(&o.runAs, "run-as", "", "OS user the throwaway PostgreSQL runs as, when run as root (default: the data directory's owner, else postgres)")
	f.StringVar(&o.workDir, "work-dir", "", "where the throwaway target is made (default: the temporary directory); needs room for a full restore")
	f.IntVar(&o.workers, "workers", 0, "parallel restore workers (default: all cores)")
	f.BoolVar(&o.json, "json", false, "print the drill report as JSON")
	f.StringVar(&o.trigger, "trigger", "manual", "why the drill runs (serve passes schedule)")
	f.MarkHidden("trigger")
	return cmd
}

func runDrillCommand(ctx context.Context, g *globalOptions, o drillOptions) error {
	p, a, err := g.asset(o.asset)
	if err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{o.time != "", o.random, o.latest, o.snapshot != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usagef("give at most one of --time, --random-point, --latest and --snapshot")
	}
	rep, err := runDrill(ctx, g, p, a, o)
	if rep == nil {
		return err
	}
	if o.json {
		doc, merr := rep.Marshal()
		if merr != nil {
			return merr
		}
		fmt.Fprintln(g.stdout, string(doc))
	} else {
		printDrill(g, rep)
	}
	return err
}

// runDrill carries out one drill of a and records its report in the
// repository it restored from and in the catalog. The report is returned
// whenever the drill ran, passed or not; the error says why it failed or
// could not be recorded.
func runDrill(ctx context.Context, g *globalOptions, p *policy.Policy, a *policy.Asset, o drillOptions) (*evidence.DrillReport, error) {
	point, when := "", time.Time{}
	switch {
	case o.time != "":
		t, err := postgres.ParseTime(o.time)
		if err != nil {
			return nil, err
		}
		point, when = drill.PointTime, t
	case o.random:
		point = policy.DrillRandom
	case o.latest:
		point = policy.DrillLatest
	case o.snapshot != "":
		point = drill.PointSnapshot
	case a.Drill != nil:
		point = a.Drill.Point
	default:
		point = policy.DrillLatest
	}
	repoName := o.repository
	var checks []policy.DrillCheck
	if a.Drill != nil {
		checks = a.Drill.Checks
		if repoName == "" {
			repoName = a.Drill.Repository
		}
	}
	if repoName == "" {
		repoName = a.Repositories[0]
	}
	r, err := g.assetRepository(ctx, p, a, repoName)
	if err != nil {
		return nil, err
	}
	fetch := func(until string) (string, error) {
		args := []string{"wal-fetch", "--repository", repoName}
		if until != "" {
			args = append(args, "--until", until)
		}
		return g.selfCommand(append(args, a.Name, "%f", "%p")...)
	}
	var tier *policy.Tier
	if t, ok := p.Tiers[a.Tier]; ok {
		tier = &t
	}
	rep, err := drill.Run(ctx, drill.Options{
		Asset: a, Tier: tier, Repo: r, Repository: repoName, Point: point, Time: when, Snapshot: o.snapshot,
		Checks: checks, Trigger: o.trigger, RestoreCommand: fetch, RunAs: o.runAs, WorkDir: o.workDir,
		Workers: o.workers, Log: g.log,
	})
	if rep == nil {
		return nil, err
	}
	// The evidence is kept even when the drill failed: a failed drill is
	// exactly what an auditor must see. Recording it uses a context of its
	// own, so a drill stopped by a signal still leaves its report.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	if serr := drill.Store(rctx, r, rep); serr != nil {
		errs = append(errs, serr)
	}
	if cerr := recordDrillInCatalog(rctx, p, rep); cerr != nil {
		errs = append(errs, cerr)
	}
	if err != nil {
		errs = append([]error{err}, errs...)
	}
	return rep, errors.Join(errs...)
}

func recordDrillInCatalog(ctx context.Context, p *policy.Policy, rep *evidence.DrillReport) error {
	c, err := catalog.Open(ctx, catalog.Path(p.StateDir))
	if err != nil {
		return fmt.Errorf("record drill %s: %w", rep.ID, err)
	}
	defer c.Close()
	return c.RecordDrill(ctx, rep)
}

// printDrill writes a drill report for a person: the verdict first, then
// the numbers an auditor asks for.
func printDrill(g *globalOptions, r *evidence.DrillReport) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(g.stdout, "drill %s of %s: %s\n", r.ID, r.Asset, verdict)
	snap := r.Snapshot
	if len(snap) > 8 {
		snap = snap[:8]
	}
	fmt.Fprintf(g.stdout, "  point %s, target %s, snapshot %s from repository %s\n", r.Point, fmtTime(r.Target), snap, r.Repository)
	var phases []string
	for _, ph := range r.Phases {
		phases = append(phases, fmt.Sprintf("%s %s", ph.Name, fmtSecs(ph.Seconds)))
	}
	fmt.Fprintf(g.stdout, "  RTO %s (%s)%s\n", fmtSecs(r.RTOSeconds), strings.Join(phases, ", "), objective(r.RTOMet, r.RTOTargetSeconds))
	if !r.Recovered.IsZero() {
		fmt.Fprintf(g.stdout, "  RPO %s (last transaction recovered %s)%s\n", fmtSecs(r.RPOSeconds), fmtTime(r.Recovered), objective(r.RPOMet, r.RPOTargetSeconds))
	}
	if r.Bytes > 0 {
		fmt.Fprintf(g.stdout, "  restored %s", humanBytes(r.Bytes))
		if tp := r.Throughput(); tp > 0 {
			fmt.Fprintf(g.stdout, " at %s/s", humanBytes(int64(tp)))
		}
		fmt.Fprintln(g.stdout)
	}
	tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		res := "ok"
		if !c.Passed {
			res = "FAILED"
		}
		detail := c.Detail
		if detail == "" && c.Got != "" {
			detail = "got " + c.Got
		}
		fmt.Fprintf(tw, "  check\t%s\t%s\t%s\t%s\n", c.Name, res, fmtSecs(c.Seconds), detail)
	}
	tw.Flush()
	for _, is := range r.Issues {
		fmt.Fprintf(g.stdout, "  issue: %s\n", is)
	}
}

func objective(met *bool, target float64) string {
	if met == nil {
		return ""
	}
	if *met {
		return fmt.Sprintf(", target %s: met", fmtSecs(target))
	}
	return fmt.Sprintf(", target %s: MISSED", fmtSecs(target))
}

func fmtSecs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}
