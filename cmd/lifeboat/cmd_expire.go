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
	"github.com/lifeboat-dr/lifeboat/internal/expire"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

type expireOptions struct {
	repository string
	dryRun     bool
	json       bool
	grace      time.Duration
	lockWait   time.Duration
	maxUnused  int
	approval   string
}

func newExpireCommand(g *globalOptions) *cobra.Command {
	var o expireOptions
	cmd := &cobra.Command{
		Use:   "expire",
		Short: "Apply retention: delete the snapshots, WAL and data no rule keeps",
		Long: `Apply each asset's retention to every repository (or one, with --repository).
For every snapshot and WAL range it prints keep or delete and the rule that
decided. Manifests go first, then WAL, then the packs no snapshot uses: those
are condemned first and deleted by a later run, once unused for --grace, so a
backup running meanwhile on another host is never left with deleted data.
Objects under S3 Object Lock are left alone, with the date they can go.
Run it with a credential that may delete; backups do not need one.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExpire(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVar(&o.repository, "repository", "", "expire this repository only")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would be deleted, change nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the report as JSON")
	cmd.Flags().DurationVar(&o.grace, "grace", 24*time.Hour, "how long data must be unused before it is deleted; longer than any backup may pause")
	cmd.Flags().DurationVar(&o.lockWait, "lock-wait", 0, "wait this long for another expire to finish")
	cmd.Flags().IntVar(&o.maxUnused, "max-unused", 30, "repack a pack once this percentage of it is unused (0-100; 100 never repacks)")
	addApprovalFlag(cmd.Flags(), &o.approval)
	return cmd
}

func runExpire(ctx context.Context, g *globalOptions, o expireOptions) error {
	if o.grace <= 0 {
		return usagef("--grace must be positive")
	}
	if o.maxUnused < 0 || o.maxUnused > 100 {
		return usagef("--max-unused must be a percentage from 0 to 100")
	}
	p, err := g.policy()
	if err != nil {
		return err
	}
	repos, err := app.NamedOrAllRepositories(p, o.repository)
	if err != nil {
		return err
	}
	var reports []*expire.Report
	var failed []error
	for _, rp := range repos {
		rep, err := expireRepository(ctx, g, p, rp, o)
		if rep != nil {
			reports = append(reports, rep)
			if !o.json {
				printExpire(g, rp.Name, rep)
			}
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("expire %s: %w", rp.Name, err))
		}
	}
	if o.json {
		if err := g.printJSON(reports); err != nil {
			return err
		}
	}
	return errors.Join(failed...)
}

func expireRepository(ctx context.Context, g *globalOptions, p *policy.Policy, rp *policy.Repository, o expireOptions) (*expire.Report, error) {
	opts := app.ExpireOptions{Grace: o.grace, DryRun: o.dryRun, LockWait: o.lockWait, Log: g.log}
	if o.maxUnused < 100 {
		opts.RepackUnused = max(float64(o.maxUnused)/100, 0.01)
	}
	svc := app.New(p, app.Options{Log: g.log, Now: g.now(time.Now)})
	defer svc.Close()
	return svc.Expire(app.WithApproval(ctx, o.approval), rp, opts)
}

func printExpire(g *globalOptions, name string, rep *expire.Report) {
	w := g.stdout
	verb := "expire"
	if rep.DryRun {
		verb = "expire (dry run, nothing changed)"
	}
	fmt.Fprintf(w, "%s: repository %s\n", verb, name)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  SNAPSHOT\tASSET\tTYPE\tEND\tDECISION\tRULE")
	for _, s := range rep.Snapshots {
		decision := "keep"
		switch {
		case !s.Keep && !s.RetainedUntil.IsZero():
			decision = "delete: under retention until " + lifeboat.FormatTime(s.RetainedUntil)
		case !s.Keep && (s.Deleted || rep.DryRun):
			decision = "delete"
		case !s.Keep:
			decision = "delete (not done)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", s.ID[:8], s.Asset, s.Type, s.End.UTC().Format("2006-01-02 15:04:05Z"),
			decision, strings.Join(s.Reasons, ", "))
	}
	tw.Flush()
	untrusted := 0
	for _, s := range rep.Snapshots {
		if s.Untrusted != "" {
			untrusted++
		}
	}
	if untrusted > 0 {
		fmt.Fprintf(w, "  warning: %s kept out of retention as untrusted (RULE says why); if not genuine, remove with `lifeboat forget SNAPSHOT --repository %s`\n",
			plural(untrusted, "snapshot"), name)
	}
	for asset, ranges := range rep.WAL {
		for _, wr := range ranges {
			decision := "keep"
			if !wr.Keep {
				decision = "delete"
				if !wr.Until.IsZero() {
					decision = fmt.Sprintf("delete: %d under retention until %s", wr.Files-wr.Deleted, wr.Until.UTC().Format(time.RFC3339))
				}
			}
			fmt.Fprintf(w, "  WAL %s timeline %d %s..%s (%d files): %s, %s\n", asset, wr.Timeline, wr.First, wr.Last, wr.Files, decision, wr.Rule)
		}
	}
	if sw := rep.Sweep; sw != nil {
		fmt.Fprintf(w, "  packs: %d stored, %d used, %d condemned (deleted after the grace period), %d deleted (%s), %d repacked (%s live data copied), %d too young to judge\n",
			sw.Packs, sw.UsedPacks, len(sw.Condemned), len(sw.Deleted), humanBytes(sw.BytesFreed), sw.Repacked, humanBytes(sw.RepackedBytes), sw.Young)
		for _, ps := range sw.Retained {
			fmt.Fprintf(w, "  pack %s: unused, under retention until %s\n", ps.Name, ps.Until.UTC().Format(time.RFC3339))
		}
		if sw.Extended > 0 {
			fmt.Fprintf(w, "  retention extended on %d objects\n", sw.Extended)
		}
		if sw.TempRemoved > 0 {
			fmt.Fprintf(w, "  %s of killed writes removed\n", plural(sw.TempRemoved, "temporary file"))
		}
	}
}

type pinOptions struct {
	repository string
	reason     string
	until      string
	approval   string
}

func newPinCommand(g *globalOptions) *cobra.Command {
	var o pinOptions
	cmd := &cobra.Command{
		Use:   "pin SNAPSHOT --reason TEXT",
		Short: "Place a legal hold on a snapshot: retention never removes it",
		Long: `Pin a snapshot in every repository that holds it (or one, with --repository).
Expire keeps a pinned snapshot, its data and the WAL it needs, whatever the
retention rules say, until it is unpinned. With --until on an S3 repository
under Object Lock, its objects are locked until that date too.`,
		Args: exactArgs(1, "one SNAPSHOT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPin(cmd.Context(), g, args[0], o, true)
		},
	}
	cmd.Flags().StringVar(&o.repository, "repository", "", "pin in this repository only")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why the snapshot is held (required)")
	cmd.Flags().StringVar(&o.until, "until", "", "keep it at least until this date (YYYY-MM-DD)")
	return cmd
}

func newUnpinCommand(g *globalOptions) *cobra.Command {
	var o pinOptions
	cmd := &cobra.Command{
		Use:   "unpin SNAPSHOT",
		Short: "Remove a legal hold; retention applies again at the next expire",
		Args:  exactArgs(1, "one SNAPSHOT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPin(cmd.Context(), g, args[0], o, false)
		},
	}
	cmd.Flags().StringVar(&o.repository, "repository", "", "unpin in this repository only")
	addApprovalFlag(cmd.Flags(), &o.approval)
	return cmd
}

func runPin(ctx context.Context, g *globalOptions, id string, o pinOptions, pin bool) error {
	if !pin {
		return runUnpin(ctx, g, id, o)
	}
	if strings.TrimSpace(o.reason) == "" {
		return usagef("pin needs --reason: who asked for the hold, and why")
	}
	var until time.Time
	if o.until != "" {
		t, err := time.Parse(time.DateOnly, o.until)
		if err != nil {
			return usagef("--until %q: want a date as YYYY-MM-DD", o.until)
		}
		until = t
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	held, err := svc.Pin(ctx, o.repository, id, o.reason, until)
	for _, h := range held {
		if h.Pin == nil {
			fmt.Fprintf(g.stdout, "snapshot %s is pinned already in %s\n", h.Snapshot.ID.Short(), h.Repository.Name)
		} else {
			fmt.Fprintf(g.stdout, "snapshot %s pinned in %s\n", h.Snapshot.ID.Short(), h.Repository.Name)
		}
	}
	return err
}

func newForgetCommand(g *globalOptions) *cobra.Command {
	var repository, approvalID string
	cmd := &cobra.Command{
		Use:   "forget SNAPSHOT --repository NAME",
		Short: "Delete one snapshot's manifest, such as one expire reports as untrusted",
		Long: `Delete one snapshot from one repository: its manifest goes now, its data at
the next expire's sweep. Expire keeps, and reports, snapshots whose times the
store does not vouch for or whose tree does not check out; once you have
confirmed that such a snapshot is not genuine, forget removes it. A pinned
snapshot is refused: unpin it first. Needs a credential that may delete.`,
		Args: exactArgs(1, "one SNAPSHOT id"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if repository == "" {
				return usagef("forget needs --repository: name the one repository to delete the snapshot from")
			}
			ctx := cmd.Context()
			p, err := g.policy()
			if err != nil {
				return err
			}
			svc := app.New(p, app.Options{Log: g.log, Now: g.now(time.Now)})
			defer svc.Close()
			rp, s, err := svc.Forget(app.WithApproval(ctx, approvalID), repository, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "snapshot %s of %s forgotten in %s; its data goes at the next expire\n", s.ID.Short(), s.Asset, rp.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&repository, "repository", "", "the repository to delete the snapshot from (required)")
	addApprovalFlag(cmd.Flags(), &approvalID)
	return cmd
}
