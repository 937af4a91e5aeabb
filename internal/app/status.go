package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// StatusRow is what status shows of one asset in one repository.
type StatusRow struct {
	Asset      string `json:"asset"`
	Repository string `json:"repository"`
	Role       string `json:"role"` // primary or copy
	Error      string `json:"error,omitempty"`
	Snapshots  int    `json:"snapshots"`
	// LastSnapshot and LastSnapshotTime name the newest snapshot.
	LastSnapshot     string    `json:"last_snapshot,omitempty"`
	LastSnapshotTime time.Time `json:"last_snapshot_time,omitzero"`
	// LastSnapshotStart is when the newest backup started (by start).
	LastSnapshotStart time.Time `json:"-"`
	NewestWAL         string    `json:"newest_wal,omitempty"`
	NewestWALTime     time.Time `json:"newest_wal_time,omitzero"`
	Lag               *CopyLag  `json:"lag,omitempty"`
}

// CopyLag is how far a copy is behind its primary.
type CopyLag struct {
	WALFiles int   `json:"wal_files"`
	WALBytes int64 `json:"wal_bytes"`
	// WALSeconds is how long ago the oldest WAL file the copy lacks was
	// archived; 0 when it lacks none.
	WALSeconds float64 `json:"wal_seconds"`
	Snapshots  int     `json:"snapshots"`
	// OldestMissingSnapshot is when the oldest snapshot the copy lacks
	// was taken.
	OldestMissingSnapshot time.Time    `json:"oldest_missing_snapshot,omitzero"`
	Queue                 *QueueStatus `json:"queue,omitempty"`
}

type QueueStatus struct {
	Dir           string    `json:"dir"`
	Entries       int       `json:"entries"`
	Bytes         int64     `json:"bytes"`
	Oldest        time.Time `json:"oldest,omitzero"`
	Damaged       int       `json:"damaged,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

// gatherStatus reads every repository of the assets: the rows of status,
// and how many repositories could not be read. Repositories are opened
// through cache, once each however many assets share them.
func (s *Service) Status(ctx context.Context, assets []*policy.Asset, now time.Time) ([]StatusRow, int, error) {
	return s.status(ctx, assets, now, nil)
}

// status is Status, handing each repository's snapshots of an asset to
// seen (when not nil) for callers that show more of them.
func (s *Service) status(ctx context.Context, assets []*policy.Asset, now time.Time, seen func(asset, repository string, snaps []*repo.Snapshot)) ([]StatusRow, int, error) {
	// Assets share repositories: each one's manifests and listings are
	// read once for all of them.
	ctx = repo.WithListMemo(ctx)
	p := s.Policy
	rows := []StatusRow{}
	failed := 0
	for _, a := range assets {
		rps, err := p.AssetRepositories(a)
		if err != nil {
			return nil, 0, &asset.UsageError{Err: err}
		}
		var primary *repo.Repository
		var primaryIDs map[string]time.Time
		for i, rp := range rps {
			row := StatusRow{Asset: a.Name, Repository: rp.Name, Role: "primary"}
			if i > 0 {
				row.Role = "copy"
			}
			r, snaps, err := s.repositoryStatus(ctx, a, rp, &row)
			if err != nil {
				row.Error = err.Error()
				failed++
			}
			var ids map[string]time.Time
			if snaps != nil {
				ids = make(map[string]time.Time, len(snaps))
				for _, snap := range snaps {
					ids[snap.ID.String()] = snap.StartTime
				}
				if seen != nil {
					seen(a.Name, rp.Name, snaps)
				}
			}
			if i == 0 {
				primary, primaryIDs = r, ids
			} else if err := s.copyStatus(ctx, a, rp, primary, primaryIDs, ids, &row, now); err != nil {
				row.Error = strings.TrimPrefix(row.Error+"; "+err.Error(), "; ")
				failed++
			}
			rows = append(rows, row)
		}
	}
	return rows, failed, nil
}

// SelectAssets is the named asset, or every asset when name is "".
func SelectAssets(p *policy.Policy, name string) ([]*policy.Asset, error) {
	if name != "" {
		a, err := p.Asset(name)
		if err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		return []*policy.Asset{a}, nil
	}
	var out []*policy.Asset
	for i := range p.Assets {
		out = append(out, &p.Assets[i])
	}
	return out, nil
}

// repositoryStatus fills the newest snapshot and WAL of the asset in one
// repository and returns the repository (nil when it cannot be opened)
// and the asset's snapshots there (nil when they cannot be read).
func (s *Service) repositoryStatus(ctx context.Context, a *policy.Asset, rp *policy.Repository, row *StatusRow) (*repo.Repository, []*repo.Snapshot, error) {
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return nil, nil, err
	}
	snaps, err := r.Snapshots(ctx, a.Name)
	if err != nil {
		return r, nil, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	if snaps == nil {
		snaps = []*repo.Snapshot{}
	}
	for _, snap := range snaps {
		if snap.StartTime.After(row.LastSnapshotStart) {
			row.LastSnapshotStart = snap.StartTime
		}
		if end := s.Kinds.Describe(snap).StopTime; end.After(row.LastSnapshotTime) {
			row.LastSnapshot, row.LastSnapshotTime = snap.ID.String(), end
		}
	}
	row.Snapshots = len(snaps)
	pitr, ok := s.pitr(a)
	if !ok {
		return r, snaps, nil
	}
	if row.NewestWAL, row.NewestWALTime, err = pitr.NewestWAL(ctx, r, a.Name); err != nil {
		return r, snaps, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	return r, snaps, nil
}

// copyStatus fills the lag of the copy rp behind primary.
func (s *Service) copyStatus(ctx context.Context, a *policy.Asset, rp *policy.Repository, primary *repo.Repository, primaryIDs, ids map[string]time.Time, row *StatusRow, now time.Time) error {
	lag := &CopyLag{}
	row.Lag = lag
	if st, err := queueStatusOf(QueueDir(s.Policy, rp)); err != nil {
		return err
	} else {
		lag.Queue = st
	}
	if primary == nil || primaryIDs == nil || ids == nil {
		return nil // already reported: a repository could not be read
	}
	for id, start := range primaryIDs {
		if _, ok := ids[id]; !ok {
			lag.Snapshots++
			if lag.OldestMissingSnapshot.IsZero() || start.Before(lag.OldestMissingSnapshot) {
				lag.OldestMissingSnapshot = start
			}
		}
	}
	pitr, ok := s.pitr(a)
	if !ok {
		return nil
	}
	dst, err := OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	defer dst.Close()
	wal, err := primary.LagOf(ctx, dst, pitr.WALPrefix(a.Name), true)
	if err != nil {
		return err
	}
	lag.WALFiles, lag.WALBytes = wal.Missing, wal.Bytes
	if !wal.Oldest.IsZero() {
		lag.WALSeconds = max(0, now.Sub(wal.Oldest).Seconds())
	}
	return nil
}

// queueStatusOf reads a copy queue without creating it; nil when this
// host never queued anything for the copy.
func queueStatusOf(dir string) (*QueueStatus, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	q, err := copyqueue.Open(dir)
	if err != nil {
		return nil, err
	}
	st, err := q.Stats()
	if err != nil {
		return nil, err
	}
	return &QueueStatus{Dir: dir, Entries: st.Entries, Bytes: st.Bytes, Oldest: st.Oldest, Damaged: st.Damaged,
		LastError: st.LastError, LastErrorTime: st.LastErrorTime}, nil
}

// QueueDir is where the copy queue of the copy repository rp lives.
func QueueDir(p *policy.Policy, rp *policy.Repository) string {
	return filepath.Join(p.StateDir, "copy-queue", rp.Name)
}

// pitr is the asset's kind as a PITR kind, when it is one.
func (s *Service) pitr(a *policy.Asset) (asset.PITR, bool) {
	k, err := s.Kinds.Kind(a.Kind)
	if err != nil {
		return nil, false
	}
	p, ok := k.(asset.PITR)
	return p, ok
}
