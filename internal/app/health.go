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
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
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
	// What status reads (every snapshot manifest, the WAL listing) meets
	// the objects planted there; each repository says what it met since.
	// One the pool did not hold yet is opened by status: all it meets is
	// new.
	marks := map[string]uint64{}
	for i := range p.Repositories {
		if r := s.openedRepository(&p.Repositories[i]); r != nil {
			// Objects read from an earlier version are looked at anew,
			// so that one repaired meanwhile stops being reported.
			r.ForgetVersions()
			marks[p.Repositories[i].Name] = r.UnauthenticMark()
		}
	}
	rows, _, err := s.Status(ctx, assets, now)
	if err != nil {
		return nil, err
	}
	f := health.Facts{Now: now, Assets: map[string]*health.AssetFacts{}, Verifies: map[string]health.Verify{},
		Unreadable: map[string]string{}, Unauthentic: map[string][]string{}, Versioning: map[string]string{}}
	for i := range p.Repositories {
		rp := &p.Repositories[i]
		r := s.openedRepository(rp)
		if r == nil {
			continue // could not be opened: status reports it
		}
		for _, u := range r.UnauthenticSince(marks[rp.Name]) {
			f.Unauthentic[rp.Name] = append(f.Unauthentic[rp.Name], repo.UnauthenticProblem(u))
		}
		for _, o := range r.OverwrittenSince(marks[rp.Name]) {
			f.Unauthentic[rp.Name] = append(f.Unauthentic[rp.Name], repo.OverwrittenProblem(o))
		}
		if _, ok := storage.Capability[storage.Versioned](r.Backend()); ok {
			f.Versioning[rp.Name] = versioningProblem(ctx, r)
		}
	}
	f.Roles = s.roleFacts(ctx)
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
			archiving, setup := s.setupFacts(ctx, a)
			af.Setup = setup
			pitr, ok := s.pitr(a)
			af.PITR = ok
			if ok && readable {
				st := pitr.Archiving(ctx, a, row.NewestWAL, row.NewestWALTime, now)
				af.WAL = &health.WALFacts{LagSeconds: st.LagSeconds, Detail: st.Detail, Failing: st.Failing}
				// WAL that goes nowhere has no lag to measure: settings
				// that archive elsewhere (or not at all) fail the check.
				if archiving != "" {
					af.WAL.Failing = archiving
				}
			}
			af.Slot = s.slotFacts(ctx, a)
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
	results := health.Evaluate(p, f)
	// The fleet's view of this host is a journal too: failing to queue
	// it does not change what the check found.
	if err := s.publishAssets(ctx, now, &f, results); err != nil {
		s.Log.Warn("fleet catalog: publish asset states", "error", err)
	}
	return results, nil
}
