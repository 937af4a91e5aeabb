package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

type backupOptions struct {
	asset    string
	full     bool
	workers  int
	lockWait time.Duration
	noCopy   bool
	json     bool
}

func newBackupCommand(g *globalOptions) *cobra.Command {
	var o backupOptions
	cmd := &cobra.Command{
		Use:   "backup ASSET",
		Short: "Take a backup of an asset",
		Long: `Take a physical backup of a PostgreSQL asset through the non-exclusive
backup API. After the first backup the default is incremental: files unchanged
since the last backup are not read again, and of the others only blocks the
repository lacks are stored. --full reads every file.

Then it brings the asset's copy repositories up to date (as lifeboat copy
does), unless --no-copy.

Exit 0 means the snapshot, its data and the WAL that makes it consistent are
durably in the repository, and in every copy. When only the copy failed, the
error says the snapshot is stored in the primary; lifeboat copy retries.`,
		Args: exactArgs(1, "ASSET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = args[0]
			return runBackup(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.full, "full", false, "read every file, not only those changed since the last backup")
	cmd.Flags().IntVar(&o.workers, "workers", 0, "parallel readers (default: all cores)")
	cmd.Flags().DurationVar(&o.lockWait, "lock-wait", 0, "wait this long for another backup of the asset to finish (default: refuse at once)")
	cmd.Flags().BoolVar(&o.noCopy, "no-copy", false, "leave the copy repositories for a later lifeboat copy")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the snapshot as one line of JSON (as snapshots --json lists it) instead of the summary")
	return cmd
}

func runBackup(ctx context.Context, g *globalOptions, o backupOptions) (err error) {
	p, a, err := g.asset(o.asset)
	if err != nil {
		return err
	}
	var snap *repo.Snapshot
	start := time.Now()
	defer func() { g.recordManualRun(ctx, p, a, start, snap, err) }()
	backup := kindBackups[a.Kind]
	if a.Kind != lifeboat.KindPostgres && backup == nil {
		return usagef("asset %s: backup of kind %s is not supported yet", a.Name, a.Kind)
	}
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return &usageError{err}
	}
	r, err := g.openRepository(ctx, rps[0])
	if err != nil {
		return err
	}
	if a.Kind == lifeboat.KindPostgres {
		snap, err = g.backupPostgres(ctx, a, r, o)
	} else if snap, err = backup(ctx, g, a, r, o); err == nil && !o.json {
		g.printSnapshot(a, snap)
	}
	if err != nil {
		return fmt.Errorf("backup %s: %w", a.Name, err)
	}
	// Printed before the copies: a run whose copy fails still names the
	// snapshot the primary holds.
	if o.json {
		if err := g.printSnapshotJSON(rps[0].Name, snap); err != nil {
			return err
		}
	}
	if o.noCopy || len(rps) == 1 {
		return nil
	}
	if err := g.drainQueues(ctx, p, rps[1:], true); err != nil {
		return fmt.Errorf("backup %s: snapshot %s is stored in %s, but %w; run lifeboat copy", a.Name, snap.ID.Short(), rps[0].Name, err)
	}
	for _, cp := range rps[1:] {
		if err := g.syncCopy(ctx, r, rps[0], cp); err != nil {
			return fmt.Errorf("backup %s: snapshot %s is stored in %s, but %w; run lifeboat copy", a.Name, snap.ID.Short(), rps[0].Name, err)
		}
	}
	return nil
}

func (g *globalOptions) backupPostgres(ctx context.Context, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error) {
	bar := newProgressLine(g)
	defer bar.done()
	snap, err := postgres.Backup(ctx, r, postgres.BackupOptions{
		Asset: a.Name, PGData: a.PGData, DSN: a.DSN, Full: o.full, Workers: o.workers,
		BlockSize: a.BlockSize, LockWait: o.lockWait, Log: g.log,
		Progress: func(pr postgres.BackupProgress) {
			bar.set(fmt.Sprintf("backup %s: %d/%d files, %s of %s read, %s new", a.Name, pr.FilesDone, pr.Files,
				humanBytes(pr.BytesRead), humanBytes(pr.BytesTotal), humanBytes(pr.BytesNew)))
		},
	})
	bar.done()
	if err != nil {
		return nil, err
	}
	info, _ := postgres.Info(snap)
	st := snap.Stats
	if !o.json {
		fmt.Fprintf(g.stdout, "snapshot %s of %s (%s): %d files, %s read, %s new, %s stored, %s, LSN %s..%s\n",
			snap.ID.Short(), a.Name, snap.Type, st.Files, humanBytes(st.BytesRead), humanBytes(st.BytesNew),
			humanBytes(st.BytesStored), snap.EndTime.Sub(snap.StartTime).Round(time.Millisecond), info.StartLSN, info.StopLSN)
	}
	if info.ChecksumFailures > 0 {
		fmt.Fprintf(g.stderr, "warning: %d pages failed their checksum (copied as they are): %v\n", info.ChecksumFailures, info.ChecksumErrors)
	}
	return snap, nil
}

// progressLine redraws one status line on a terminal and prints nothing
// otherwise, so cron mail and CI logs get only the final summary.
type progressLine struct {
	mu     sync.Mutex
	g      *globalOptions
	on     bool
	last   time.Time
	width  int
	closed bool
}

func newProgressLine(g *globalOptions) *progressLine {
	return &progressLine{g: g, on: isTerminal(g.stderr)}
}

func (p *progressLine) set(s string) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
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

// recordManualRun records a backup run by hand (or by cron) in the
// catalog, as serve records its own, so check, metrics and the report see
// every backup. The record is a journal: failing to write it is reported
// and does not change the backup's outcome.
func (g *globalOptions) recordManualRun(ctx context.Context, p *policy.Policy, a *policy.Asset, start time.Time, snap *repo.Snapshot, err error) {
	if os.Getenv(envServeRun) != "" {
		return
	}
	rec := catalog.Run{Asset: a.Name, Kind: string(a.Kind), Trigger: string(scheduler.TriggerManual), Start: start, End: time.Now(),
		Result: catalog.OK}
	switch {
	case snap != nil:
		rec.Snapshot, rec.Bytes, rec.BytesStored = snap.ID.String(), snap.Stats.BytesTotal, snap.Stats.BytesStored
		if err != nil { // stored in the primary; a copy failed
			rec.Error = oneLine(err)
		}
	case ctx.Err() != nil:
		rec.Result, rec.Error = catalog.Aborted, oneLine(err)
	case err != nil:
		rec.Result, rec.Error = catalog.Failed, oneLine(err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	c, cerr := catalog.Open(rctx, catalog.Path(p.StateDir))
	if cerr == nil {
		cerr = c.Insert(rctx, &rec)
		c.Close()
	}
	if cerr != nil {
		g.log.Warn("the run was not recorded in the catalog", "asset", a.Name, "error", oneLine(cerr))
	}
}
