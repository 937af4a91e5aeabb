package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// AssetInfo is what an operator needs to know of one asset before a
// restore: per repository, what it holds and how far back and forward it
// can restore.
type AssetInfo struct {
	Asset        string           `json:"asset"`
	Kind         string           `json:"kind"`
	Tier         string           `json:"tier,omitempty"`
	Repositories []RepositoryInfo `json:"repositories"`
}

// RepositoryInfo is one asset in one repository.
type RepositoryInfo struct {
	// Status is the row status shows: newest snapshot and WAL, and for a
	// copy how far it lags.
	Status    StatusRow     `json:"status"`
	Snapshots []SnapshotRow `json:"snapshots"`
	// BytesStored is what the snapshots added to the repository when they
	// were taken (deduplicated and compressed).
	BytesStored int64                  `json:"bytes_stored"`
	Pins        []PinRow               `json:"pins,omitempty"`
	Windows     []asset.RecoveryWindow `json:"windows,omitempty"`
	// RestorePoints are the named points recorded (PITR kinds).
	RestorePoints []asset.RestorePoint `json:"restore_points,omitempty"`
}

// PinRow is a legal hold on one snapshot.
type PinRow struct {
	Snapshot string    `json:"snapshot"`
	Reason   string    `json:"reason"`
	By       string    `json:"by"`
	Created  time.Time `json:"created,omitzero"`
	Until    time.Time `json:"until,omitzero"`
}

// Info gathers, for each asset, what every repository it uses holds.
func (s *Service) Info(ctx context.Context, assets []*policy.Asset, now time.Time) ([]AssetInfo, error) {
	// The status rows and the listing below read the same manifests and
	// WAL listings: once each.
	ctx = repo.WithListMemo(ctx)
	type key struct{ asset, repository string }
	snapsOf := map[key][]*repo.Snapshot{}
	rows, _, err := s.status(ctx, assets, now, func(a, rp string, snaps []*repo.Snapshot) { snapsOf[key{a, rp}] = snaps })
	if err != nil {
		return nil, err
	}
	byAsset := map[string][]StatusRow{}
	for _, row := range rows {
		byAsset[row.Asset] = append(byAsset[row.Asset], row)
	}
	work, err := os.MkdirTemp("", "lifeboat-info-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out := []AssetInfo{}
	for _, a := range assets {
		ai := AssetInfo{Asset: a.Name, Kind: string(a.Kind), Tier: a.Tier}
		pitr, _ := s.pitr(a)
		for _, row := range byAsset[a.Name] {
			ri := RepositoryInfo{Status: row, Snapshots: []SnapshotRow{}}
			if row.Error == "" {
				if err := s.repositoryInfo(ctx, a, row.Repository, pitr, work, snapsOf[key{a.Name, row.Repository}], &ri); err != nil {
					ri.Status.Error = err.Error()
				}
			}
			ai.Repositories = append(ai.Repositories, ri)
		}
		out = append(out, ai)
	}
	return out, nil
}

// repositoryInfo fills what one repository holds of an asset.
func (s *Service) repositoryInfo(ctx context.Context, a *policy.Asset, name string, pitr asset.PITR, work string, snaps []*repo.Snapshot, ri *RepositoryInfo) error {
	rp, err := s.Policy.Repository(name)
	if err != nil {
		return err
	}
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return err
	}
	for _, snap := range snaps {
		ri.Snapshots = append(ri.Snapshots, s.Row(name, snap))
		ri.BytesStored += snap.Stats.BytesStored
	}
	sort.SliceStable(ri.Snapshots, func(i, j int) bool { return ri.Snapshots[i].StopTime.Before(ri.Snapshots[j].StopTime) })
	pins, err := r.Pins(ctx)
	if err != nil {
		return fmt.Errorf("repository %s: %w", name, err)
	}
	for _, snap := range snaps {
		if p := pins[snap.ID]; p != nil {
			ri.Pins = append(ri.Pins, PinRow{Snapshot: snap.ID.String(), Reason: p.Reason, By: p.By, Created: p.Created, Until: p.Until})
		}
	}
	if pitr == nil {
		return nil
	}
	if ri.Windows, err = pitr.Windows(ctx, r, a.Name, snaps, work); err != nil {
		return fmt.Errorf("repository %s: %w", name, err)
	}
	if ri.RestorePoints, err = pitr.RestorePoints(ctx, r, a.Name); err != nil {
		return fmt.Errorf("repository %s: %w", name, err)
	}
	return nil
}
