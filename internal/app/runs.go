package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// RecordBackup records a backup run by hand (or by cron) in the catalog,
// as serve records its own, so check, metrics and the report see every
// backup. A result with a snapshot and an error is a backup stored in the
// primary whose copy failed. The record is a journal: failing to write it
// is returned for a warning and does not change the backup's outcome.
func (s *Service) RecordBackup(ctx context.Context, res *BackupResult, err error) error {
	a, snap := res.Asset, res.Snapshot
	rec := catalog.Run{Asset: a.Name, Kind: string(a.Kind), Trigger: string(scheduler.TriggerManual), Start: res.Start, End: s.Now(),
		Result: catalog.OK}
	switch {
	case snap != nil:
		rec.Snapshot, rec.Bytes, rec.BytesStored = snap.ID.String(), snap.Stats.BytesTotal, snap.Stats.BytesStored
		if err != nil {
			rec.Error = oneLine(err)
		}
	case ctx.Err() != nil:
		rec.Result, rec.Error = catalog.Aborted, oneLine(err)
	case err != nil:
		rec.Result, rec.Error = catalog.Failed, oneLine(err)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	c, err := s.openCatalog(rctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.Insert(rctx, &rec)
}

// Runs lists the runs the catalog holds (f.Assets empty: every asset):
// every host's, each with its Host, when the policy names a fleet
// catalog. It creates no catalog where nothing ran.
func (s *Service) Runs(ctx context.Context, f catalog.Filter) ([]catalog.Run, error) {
	if runs, ok, err := s.fleetRuns(ctx, f); ok {
		return runs, err
	}
	var runs []catalog.Run
	err := s.readCatalog(ctx, func(c *catalog.Catalog) (err error) {
		runs, err = c.Runs(ctx, f)
		return err
	})
	return runs, err
}

// readCatalog calls read with the catalog, open for the call; it creates
// no catalog where nothing ran (read is then not called).
func (s *Service) readCatalog(ctx context.Context, read func(*catalog.Catalog) error) error {
	path := catalog.Path(s.Policy.StateDir)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	c, err := catalog.Open(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	return read(c)
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", "; ") }
