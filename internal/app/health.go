package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Health judges every asset (internal/health) on the facts it gathers: every repository's
// snapshots and WAL, each copy's lag, the servers' archivers, and the
// drills and verifies recorded in the catalog.
func (s *Service) Health(ctx context.Context, now time.Time) ([]health.Result, error) {
	p := s.Policy
	var assets []*policy.Asset
	for i := range p.Assets {
		assets = append(assets, &p.Assets[i])
	}
	rows, _, err := s.Status(ctx, assets, now)
	if err != nil {
		return nil, err
	}
	f := health.Facts{Now: now, Assets: map[string]*health.AssetFacts{}, Verifies: map[string]health.Verify{},
		Unreadable: map[string]string{}}
	for _, row := range rows {
		af := f.Assets[row.Asset]
		if af == nil {
			af = &health.AssetFacts{}
			f.Assets[row.Asset] = af
		}
		readable := row.Error == ""
		if !readable {
			f.Unreadable[row.Repository] = row.Error
		}
		if row.Role == "primary" {
			af.PrimaryRead = readable
			af.NewestBackup = row.LastSnapshotStart
			a, _ := p.Asset(row.Asset)
			pitr, ok := s.pitr(a)
			af.PITR = ok
			if ok && readable {
				st := pitr.Archiving(ctx, a, row.NewestWAL, row.NewestWALTime, now)
				af.WAL = &health.WALFacts{LagSeconds: st.LagSeconds, Detail: st.Detail, Failing: st.Failing}
			}
			continue
		}
		cf := health.CopyFacts{Repository: row.Repository, Read: readable}
		if l := row.Lag; l != nil {
			cf.MissingSnapshots, cf.OldestMissing = l.Snapshots, l.OldestMissingSnapshot
			cf.WALFiles, cf.WALSeconds = l.WALFiles, l.WALSeconds
		}
		af.Copies = append(af.Copies, cf)
	}
	// The catalog is read, never created, here: a host where nothing was
	// recorded simply has no drills and no verifies.
	path := catalog.Path(p.StateDir)
	if _, err := os.Stat(path); err == nil {
		c, err := catalog.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		vs, err := c.LastVerify(ctx)
		if err != nil {
			return nil, err
		}
		for name, v := range vs {
			f.Verifies[name] = health.Verify{At: v.End, OK: v.OK, Error: v.Error}
		}
		for _, a := range assets {
			ds, err := c.Drills(ctx, catalog.DrillFilter{Asset: a.Name, Limit: 100})
			if err != nil {
				return nil, err
			}
			if af := f.Assets[a.Name]; af != nil {
				af.Drills = ds
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return health.Evaluate(p, f), nil
}
