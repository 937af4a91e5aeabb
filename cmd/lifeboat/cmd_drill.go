package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
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
	// A platform exercise (drill --platform).
	platform  bool
	group     string
	freshHost bool
	parallel  int
	whole     bool
}

func newDrillCommand(g *globalOptions) *cobra.Command {
	var o drillOptions
	cmd := &cobra.Command{
		Use:   "drill ASSET [--time T | --random-point | --latest | --snapshot ID] [--repository NAME]\n  lifeboat drill --platform [--group G] [--repository NAME] [--fresh-host] [--parallel N]",
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
transaction that came back.

With --platform, every asset of the policy (or of --group) is drilled in
tier order, the tightest RTO first, up to --parallel at once: the full DR
failover drill. A tier starts once every drill of the tier before has
restored its data (--whole-tiers: once they have ended, checks included). --fresh-host rehearses a new host after the
loss of the primary region: only --repository is opened and no local state
is read. Exit status 1 when any asset's drill failed (each is named).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.platform {
				if len(args) != 0 {
					return usagef("drill --platform takes no ASSET (use --group to drill some of them)")
				}
				return nil
			}
			return exactArgs(1, "ASSET")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.platform {
				return runPlatformDrill(cmd.Context(), g, o)
			}
			if o.group != "" || o.freshHost || o.parallel != 0 || o.whole {
				return usagef("--group, --fresh-host, --parallel and --whole-tiers apply to drill --platform")
			}
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
	f.BoolVar(&o.platform, "platform", false, "drill every asset (or --group) in tier order: the full DR failover drill")
	f.StringVar(&o.group, "group", "", "with --platform: only the assets of this policy group")
	f.BoolVar(&o.freshHost, "fresh-host", false, "with --platform: open only --repository and read no local state, as a new host in another region")
	f.IntVar(&o.parallel, "parallel", 0, "with --platform: drills at once (default: the policy's, else the cores)")
	f.BoolVar(&o.whole, "whole-tiers", false, "with --platform: a tier waits for the whole drills of the one before, checks included, not only for their restores")
	f.StringVar(&o.trigger, "trigger", "manual", "why the drill runs (serve passes schedule)")
	f.MarkHidden("trigger")
	return cmd
}

func runDrillCommand(ctx context.Context, g *globalOptions, o drillOptions) error {
	n := 0
	for _, set := range []bool{o.time != "", o.random, o.latest, o.snapshot != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return usagef("give at most one of --time, --random-point, --latest and --snapshot")
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	req := app.DrillRequest{Asset: o.asset, Snapshot: o.snapshot, Repository: o.repository, Trigger: o.trigger,
		RunAs: o.runAs, WorkDir: o.workDir, Workers: o.workers, SelfCommand: g.selfCommand}
	switch {
	case o.time != "":
		t, err := asset.ParseTime(o.time)
		if err != nil {
			return err
		}
		req.Point, req.Time = asset.PointTime, t
	case o.random:
		req.Point = policy.DrillRandom
	case o.latest:
		req.Point = policy.DrillLatest
	case o.snapshot != "":
		req.Point = asset.PointSnapshot
	}
	rep, err := svc.Drill(ctx, req)
	g.report.Drill(rep) // for lifeboat serve, when it runs this drill
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
	return lifeboat.FormatTime(t)
}

// runPlatformDrill carries out drill --platform.
func runPlatformDrill(ctx context.Context, g *globalOptions, o drillOptions) error {
	if o.time != "" || o.random || o.latest || o.snapshot != "" {
		return usagef("drill --platform drills each asset to its policy's drill point: --time, --random-point, --latest and --snapshot apply to one asset")
	}
	if o.parallel < 0 {
		return usagef("--parallel must be at least 1")
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	req := app.PlatformRequest{Group: o.group, Repository: o.repository, FreshHost: o.freshHost, Parallel: o.parallel, WholeTiers: o.whole,
		Trigger: o.trigger, RunAs: o.runAs, WorkDir: o.workDir, SelfCommand: g.selfCommand}
	if !o.json {
		req.Progress = func(r *evidence.DrillReport, err error) {
			switch {
			case r != nil:
				verdict := "PASSED"
				if !r.Passed {
					verdict = "FAILED"
				}
				tier := ""
				if r.Tier != "" {
					tier = " (" + r.Tier + ")"
				}
				fmt.Fprintf(g.stderr, "drill %s of %s%s: %s, RTO %s\n", r.ID, r.Asset, tier, verdict, fmtSecs(r.RTOSeconds))
			case err != nil:
				fmt.Fprintf(g.stderr, "%v\n", err)
			}
		}
	}
	rep, err := svc.PlatformDrill(ctx, req)
	if rep == nil {
		return err
	}
	if o.json {
		if perr := g.printJSON(rep); perr != nil {
			return errors.Join(err, perr)
		}
		return err
	}
	printPlatform(g, rep)
	return err
}

// printPlatform writes an exercise's report for a person: the verdict,
// each tier against its RTO, then each asset.
func printPlatform(g *globalOptions, r *evidence.PlatformReport) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	scope := "every asset"
	if r.Group != "" {
		scope = "group " + r.Group
	}
	from := "each asset's drill repository"
	if r.Repository != "" {
		from = "repository " + r.Repository
	}
	if r.FreshHost {
		from += " (fresh host)"
	}
	fmt.Fprintf(g.stdout, "platform exercise %s of %s from %s: %s\n", r.ID, scope, from, verdict)
	fmt.Fprintf(g.stdout, "  platform RTO %s, worst RPO %s, %d at once\n", fmtSecs(r.RTOSeconds), fmtSecs(r.RPOSeconds), r.Parallel)
	tw := tabwriter.NewWriter(g.stdout, 2, 4, 2, ' ', 0)
	for _, t := range r.Tiers {
		name := t.Tier
		if name == "" {
			name = "(no tier)"
		}
		fmt.Fprintf(tw, "  tier\t%s\tback after %s%s\t%s\n", name, fmtSecs(t.RTOSeconds), objective(t.RTOMet, t.RTOTargetSeconds), strings.Join(t.Assets, ", "))
	}
	for _, m := range r.Members {
		res := "ok"
		if !m.Passed {
			res = "FAILED"
		}
		fmt.Fprintf(tw, "  asset\t%s\t%s\tRTO %s, RPO %s\t%s\t%s\n", m.Asset, res, fmtSecs(m.RTOSeconds), fmtSecs(m.RPOSeconds), m.Drill, m.Error)
	}
	tw.Flush()
	for _, is := range r.Issues {
		fmt.Fprintf(g.stdout, "  issue: %s\n", is)
	}
}
