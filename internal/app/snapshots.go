package app

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// SnapshotRow is one snapshot as listings show it.
type SnapshotRow struct {
	ID          string    `json:"id"`
	Repository  string    `json:"repository"`
	Asset       string    `json:"asset"`
	Kind        string    `json:"kind"`
	Type        string    `json:"type"`
	Parent      string    `json:"parent,omitempty"`
	StartTime   time.Time `json:"start_time"`
	StopTime    time.Time `json:"stop_time"`
	StartLSN    string    `json:"start_lsn,omitempty"`
	StopLSN     string    `json:"stop_lsn,omitempty"`
	Timeline    uint32    `json:"timeline,omitempty"`
	Files       int64     `json:"files"`
	BytesTotal  int64     `json:"bytes_total"`
	BytesRead   int64     `json:"bytes_read"`
	BytesNew    int64     `json:"bytes_new"`
	BytesStored int64     `json:"bytes_stored"`
	// ListsPatched counts files whose block list the snapshot stores as a
	// patch of its parent's rather than whole.
	ListsPatched int64  `json:"lists_patched,omitempty"`
	Name         string `json:"name,omitempty"` // a logical dump's <asset>_<YYYY-MM-DD>
	// Pin is the legal hold on the snapshot in this repository (its
	// reason and who placed it), nil when it is not held.
	Pin *PinRow `json:"pin,omitempty"`
}

// Snapshots lists the snapshots of the asset ("" for all) in the
// repository called repository, or in the asset's primary (every
// repository when neither is given), oldest first.
func (s *Service) Snapshots(ctx context.Context, assetName, repository string) ([]SnapshotRow, error) {
	p := s.Policy
	var err error
	var repos []*policy.Repository
	if repository == "" && assetName != "" {
		a, err := p.Asset(assetName)
		if err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		if repos, err = p.AssetRepositories(a); err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		repos = repos[:1]
	} else if repos, err = NamedOrAllRepositories(p, repository); err != nil {
		return nil, err
	}
	rows := []SnapshotRow{}
	for _, rp := range repos {
		r, err := s.Repository(ctx, rp)
		if err != nil {
			return nil, err
		}
		snaps, err := r.Snapshots(ctx, assetName)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		pins, err := r.Pins(ctx)
		if err != nil {
			return nil, fmt.Errorf("repository %s: pins: %w", rp.Name, err)
		}
		for _, snap := range snaps {
			row := s.Row(rp.Name, snap)
			if p := pins[snap.ID]; p != nil {
				row.Pin = &PinRow{Snapshot: row.ID, Reason: p.Reason, By: p.By, Created: p.Created, Until: p.Until}
			}
			rows = append(rows, row)
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].StopTime.Before(rows[j].StopTime) })
	return rows, nil
}

// Row is a snapshot as listings show it.
func (s *Service) Row(repoName string, snap *repo.Snapshot) SnapshotRow {
	row := SnapshotRow{ID: snap.ID.String(), Repository: repoName, Asset: snap.Asset, Kind: snap.Kind, Type: snap.Type,
		StartTime: snap.StartTime, StopTime: snap.EndTime, Files: snap.Stats.Files, BytesTotal: snap.Stats.BytesTotal,
		BytesRead: snap.Stats.BytesRead, BytesNew: snap.Stats.BytesNew, BytesStored: snap.Stats.BytesStored,
		ListsPatched: snap.Stats.ListsPatched}
	if snap.Parent != nil {
		row.Parent = snap.Parent.String()
	}
	d := s.Kinds.Describe(snap)
	row.Name, row.StartLSN, row.StopLSN, row.Timeline, row.StopTime = d.Name, d.StartLSN, d.StopLSN, d.Timeline, d.StopTime
	return row
}
