package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// The asset kinds beyond PostgreSQL clusters plug in here: each kind's
// file registers its backup and restore in an init function, so that the
// commands stay one switch away from every kind.

// kindBackupFunc backs up asset a into r and returns the recorded
// snapshot; it records nothing when it fails.
type kindBackupFunc func(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error)

// kindRestoreFunc restores snapshot s of asset a from r as o asks, and
// prints what it did.
type kindRestoreFunc func(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, o restoreOptions) error

var (
	kindBackups  = map[lifeboat.AssetKind]kindBackupFunc{}
	kindRestores = map[lifeboat.AssetKind]kindRestoreFunc{}
)

// kindFlags are the restore flags that only some asset kinds take.
func (o restoreOptions) kindFlags() []struct {
	name string
	set  bool
} {
	return []struct {
		name string
		set  bool
	}{
		{"--time", o.time != ""}, {"--lsn", o.lsn != ""}, {"--xid", o.xid != ""}, {"--name", o.name != ""},
		{"--delta", o.delta}, {"--tablespace", len(o.tablespaces) > 0}, {"--archive-off", o.archiveOff},
		{"--to-dsn", o.toDSN != ""}, {"--database", o.database != ""}, {"--globals", o.globals},
		{"--no-owner", o.noOwner}, {"--path", o.path != ""},
	}
}

// refuseFlags is a usage error naming the first kind-specific restore flag
// set that the kind does not take (allowed), or nil; takes says what the
// kind does take.
func (o restoreOptions) refuseFlags(kind lifeboat.AssetKind, takes string, allowed ...string) error {
	for _, f := range o.kindFlags() {
		if f.set && !slices.Contains(allowed, f.name) {
			return usagef("%s does not apply to %s assets (they take %s)", f.name, kind, takes)
		}
	}
	return nil
}

// printSnapshot is the line a backup of any kind ends with.
func (g *globalOptions) printSnapshot(a *policy.Asset, snap *repo.Snapshot) {
	st := snap.Stats
	fmt.Fprintf(g.stdout, "snapshot %s of %s (%s): %d files, %s read, %s new, %s stored, %s\n",
		snap.ID.Short(), a.Name, a.Kind, st.Files, humanBytes(st.BytesRead), humanBytes(st.BytesNew),
		humanBytes(st.BytesStored), snap.EndTime.Sub(snap.StartTime).Round(time.Millisecond))
}

// printSnapshotJSON is what backup --json prints instead: the snapshot as
// snapshots --json lists it, on one line, for the daemon and scripts.
func (g *globalOptions) printSnapshotJSON(repository string, snap *repo.Snapshot) error {
	return json.NewEncoder(g.stdout).Encode(rowFor(repository, snap))
}

// findInRepositories finds the snapshot id (an ID or a unique prefix) in
// the policy's repository called name, or in the first of all of them
// that holds it; a nil snapshot when none does.
func (g *globalOptions) findInRepositories(ctx context.Context, p *policy.Policy, name, id string) (*repo.Repository, *repo.Snapshot, error) {
	repos, err := namedOrAllRepositories(p, name)
	if err != nil {
		return nil, nil, err
	}
	for _, rp := range repos {
		r, err := g.openRepository(ctx, rp)
		if err != nil {
			return nil, nil, err
		}
		s, err := r.FindSnapshot(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return r, s, nil
	}
	return nil, nil, nil
}

// pickSnapshot is the snapshot of the asset a restore starts from: the one
// named (an ID or a unique prefix), else the newest.
func pickSnapshot(ctx context.Context, r *repo.Repository, asset, id string) (*repo.Snapshot, error) {
	if id != "" {
		s, err := r.FindSnapshot(ctx, id)
		if err != nil {
			return nil, err
		}
		if s.Asset != asset {
			return nil, usagef("snapshot %s belongs to asset %s, not %s", s.ID.Short(), s.Asset, asset)
		}
		return s, nil
	}
	snaps, err := r.Snapshots(ctx, asset)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("asset %s has no snapshot in this repository", asset)
	}
	newest := snaps[0]
	for _, s := range snaps[1:] {
		if s.EndTime.After(newest.EndTime) {
			newest = s
		}
	}
	return newest, nil
}

// recordedChecks are the asset's drill checks that compare with the value
// at backup time ("= recorded"): the backup takes their values.
func recordedChecks(a *policy.Asset) []checkquery.Query {
	if a.Drill == nil {
		return nil
	}
	var qs []checkquery.Query
	for _, c := range a.Drill.Checks {
		if c.Expect.Kind == policy.ExpectRecorded {
			qs = append(qs, checkquery.Query{Name: c.Name, SQL: c.SQL, Database: c.Database})
		}
	}
	return qs
}
