package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

type backupOptions struct {
	asset    string
	full     bool
	workers  int
	lockWait time.Duration
	// archiveTimeout bounds the wait for the backup's last WAL segment.
	archiveTimeout time.Duration
	noCopy         bool
	json           bool
	checkBlocks    bool
	// all, pin and reason make an incident snapshot (docs/retention.md):
	// every asset, each new snapshot held with the reason.
	all    bool
	pin    bool
	reason string
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup ASSET | --all [--pin --reason TEXT]",
		Short: "Take a backup of an asset",
		Long: `Take a physical backup of a PostgreSQL asset through the non-exclusive
backup API. After the first backup the default is incremental: files unchanged
since the last backup are not read again, and of the others only blocks the
repository lacks are stored. --full reads every file.

Then it brings the asset's copy repositories up to date (as lifeboat copy
does), unless --no-copy.

Exit 0 means the snapshot, its data and the WAL that makes it consistent are
durably in the repository, and in every copy. When only the copy failed, the
error says the snapshot is stored in the primary; lifeboat copy retries.

--all backs up every asset of the policy; one that fails does not stop the
others, and the command fails naming those that failed.

--pin --reason TEXT makes an incident snapshot (a forensic snapshot before
anything else is touched): the new snapshot is placed on legal hold, with the
reason and who asked, in every repository of the asset that holds it (a copy
that gets it later gets the hold with it). Expire never removes it until
lifeboat unpin. With a failed copy the snapshot is still held in the primary.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.all {
				return exactArgs(0, "no ASSET with --all")(cmd, args)
			}
			return exactArgs(1, "ASSET (or --all)")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.asset = args[0]
			}
			return runBackups(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.full, "full", false, "read every file, not only those changed since the last backup")
	cmd.Flags().IntVar(&o.workers, "workers", 0, "parallel readers (default: all cores)")
	cmd.Flags().DurationVar(&o.lockWait, "lock-wait", 0, "wait this long for another backup of the asset to finish (default: refuse at once)")
	cmd.Flags().DurationVar(&o.archiveTimeout, "archive-timeout", 0, "PostgreSQL: how long to wait for the backup's last WAL segment to be archived (default 10m; a failing archiver ends the wait at once)")
	cmd.Flags().BoolVar(&o.checkBlocks, "check-blocks", false, "PostgreSQL incrementals: also read changed files whole and fail naming any changed block the WAL since the parent does not reference")
	cmd.Flags().BoolVar(&o.noCopy, "no-copy", false, "leave the copy repositories for a later lifeboat copy")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the snapshot as one line of JSON (as snapshots --json lists it) instead of the summary")
	cmd.Flags().BoolVar(&o.all, "all", false, "back up every asset of the policy; a failure of one does not stop the others")
	cmd.Flags().BoolVar(&o.pin, "pin", false, "incident snapshot: place the new snapshot on legal hold (needs --reason)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "with --pin: why the snapshot is held (the incident, who asked)")
	return cmd
}

// runBackups backs up the asset named, or every asset with --all, and
// with --pin holds each new snapshot.
func runBackups(ctx context.Context, g *globalOptions, o backupOptions) error {
	switch {
	case o.pin && strings.TrimSpace(o.reason) == "":
		return usagef("--pin needs --reason: the incident, and who asked for the hold")
	case !o.pin && o.reason != "":
		return usagef("--reason goes with --pin")
	}
	if !o.all {
		return backupAndPin(ctx, g, o)
	}
	p, err := g.policy()
	if err != nil {
		return err
	}
	var failed []string
	for _, a := range p.Assets {
		one := o
		one.asset = a.Name
		if err := backupAndPin(ctx, g, one); err != nil {
			if ctx.Err() != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "lifeboat: %s\n", oneLine(err))
			failed = append(failed, a.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("backup --all: %d of %d assets failed: %s", len(failed), len(p.Assets), strings.Join(failed, ", "))
	}
	return nil
}

// backupAndPin is one backup, then with --pin its hold: placed even when
// only the copies failed, since the primary holds the snapshot.
func backupAndPin(ctx context.Context, g *globalOptions, o backupOptions) error {
	res, err := runBackup(ctx, g, o)
	if !o.pin || res == nil || res.Snapshot == nil {
		return err
	}
	svc, serr := g.service()
	if serr != nil {
		return errors.Join(err, serr)
	}
	id := res.Snapshot.ID.String()
	held, perr := svc.PinSnapshot(ctx, res.Asset.Name, id, o.reason, time.Time{})
	var where []string
	for _, h := range held {
		where = append(where, h.Repository.Name)
	}
	if len(held) > 0 {
		fmt.Fprintf(g.stdout, "incident snapshot %s of %s held in %s: %s\n", res.Snapshot.ID.Short(), res.Asset.Name, strings.Join(where, ", "), o.reason)
	}
	if perr != nil {
		perr = fmt.Errorf("backup %s: snapshot %s is stored but not held everywhere: %w; run lifeboat pin %s --reason ...", res.Asset.Name, res.Snapshot.ID.Short(), perr, res.Snapshot.ID.Short())
	}
	return errors.Join(err, perr)
}

func runBackup(ctx context.Context, g *globalOptions, o backupOptions) (res *app.BackupResult, err error) {
	svc, err := g.service()
	if err != nil {
		return nil, err
	}
	bar := newProgressLine(g)
	defer bar.done()
	res, err = svc.Backup(ctx, app.BackupRequest{Asset: o.asset, Full: o.full, Workers: o.workers, LockWait: o.lockWait, ArchiveTimeout: o.archiveTimeout,
		CheckBlocks: o.checkBlocks, Progress: bar.set, Warn: func(msg string) {
			bar.done()
			fmt.Fprintf(g.stderr, "warning: %s\n", msg)
		}})
	bar.done()
	if res != nil && res.Asset != nil {
		defer func() { g.recordManualRun(ctx, svc, res, err) }()
	}
	if err != nil {
		return res, err
	}
	a, snap := res.Asset, res.Snapshot
	// Printed before the copies: a run whose copy fails still names the
	// snapshot the primary holds.
	if o.json {
		if err := g.printSnapshotJSON(svc, res.Repository.Name, snap); err != nil {
			return res, err
		}
	} else {
		g.printSnapshot(res)
	}
	if o.noCopy || len(res.Copies) == 0 {
		return res, nil
	}
	if err := svc.DrainQueues(ctx, res.Copies, true); err != nil {
		return res, fmt.Errorf("backup %s: snapshot %s is stored in %s, but %w; run lifeboat copy", a.Name, snap.ID.Short(), res.Repository.Name, err)
	}
	for _, cp := range res.Copies {
		c, err := svc.SyncCopy(ctx, res.Repo, res.Repository, cp)
		if err != nil {
			return res, fmt.Errorf("backup %s: snapshot %s is stored in %s, but %w; run lifeboat copy", a.Name, snap.ID.Short(), res.Repository.Name, err)
		}
		g.printCopied(c)
	}
	return res, nil
}

// printSnapshot is the line a backup of any kind ends with.
func (g *globalOptions) printSnapshot(res *app.BackupResult) {
	snap := res.Snapshot
	st := snap.Stats
	line := fmt.Sprintf("snapshot %s of %s (%s): %d files, %s read, %s new, %s stored, %s",
		snap.ID.Short(), res.Asset.Name, res.What, st.Files, humanBytes(st.BytesRead), humanBytes(st.BytesNew),
		humanBytes(st.BytesStored), snap.EndTime.Sub(snap.StartTime).Round(time.Millisecond))
	if res.Summary != "" {
		line += ", " + res.Summary
	}
	fmt.Fprintln(g.stdout, line)
}

// printSnapshotJSON is what backup --json prints instead: the snapshot as
// snapshots --json lists it, on one line, for the daemon and scripts.
func (g *globalOptions) printSnapshotJSON(svc *app.Service, repository string, snap *repo.Snapshot) error {
	return json.NewEncoder(g.stdout).Encode(svc.Row(repository, snap))
}

// progressLine redraws one status line on a terminal and prints nothing
// otherwise, so cron mail and CI logs get only the final summary.
type progressLine struct {
	mu     sync.Mutex
	g      *globalOptions
	on     bool
	start  time.Time
	last   time.Time
	width  int
	closed bool
}

func newProgressLine(g *globalOptions) *progressLine {
	return &progressLine{g: g, on: isTerminal(g.stderr), start: time.Now()}
}

func (p *progressLine) set(pr asset.Progress) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.closed || now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	s := pr.Line + rateAndETA(pr, now.Sub(p.start))
	pad := p.width - len(s)
	p.width = len(s)
	if pad < 0 {
		pad = 0
	}
	fmt.Fprintf(p.g.stderr, "\r%s%*s", s, pad, "")
}

func (p *progressLine) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.on && !p.closed && p.width > 0 {
		fmt.Fprintf(p.g.stderr, "\r%*s\r", p.width, "")
	}
	p.closed = true
}

// envServeRun is set by lifeboat serve for the backups it runs, which it
// records itself.
const envServeRun = "LIFEBOAT_SERVE_RUN"

// recordManualRun tells lifeboat serve, when it runs this backup, what
// it stored; run by hand or by cron, the backup is recorded in the
// catalog, as serve records its own runs.
func (g *globalOptions) recordManualRun(ctx context.Context, svc *app.Service, res *app.BackupResult, err error) {
	if snap := res.Snapshot; snap != nil {
		g.report.Snapshot(snap.ID.String(), snap.Stats.BytesTotal, snap.Stats.BytesStored)
	}
	if os.Getenv(envServeRun) != "" {
		return
	}
	if cerr := svc.RecordBackup(ctx, res, err); cerr != nil {
		g.log.Warn("the run was not recorded in the catalog", "asset", res.Asset.Name, "error", oneLine(cerr))
	}
}

// rateAndETA is what a progress line adds: the mean rate so far and, when
// the total is known, the time left at that rate.
func rateAndETA(pr asset.Progress, elapsed time.Duration) string {
	if pr.Done <= 0 || elapsed < time.Second {
		return ""
	}
	rate := float64(pr.Done) / elapsed.Seconds()
	out := fmt.Sprintf(", %s/s", humanBytes(int64(rate)))
	if pr.Total > pr.Done {
		left := time.Duration(float64(pr.Total-pr.Done) / rate * float64(time.Second))
		out += ", about " + left.Round(time.Second).String() + " left"
	}
	return out
}
