// Package expire carries out retention on one repository: it decides,
// per asset, which snapshots and WAL stay, deletes the manifests of the
// others first (the catalog), then their WAL, and finally sweeps the packs
// nothing uses any more, in the two-step, grace-period protocol of
// repo.Sweep. Objects under retention (S3 Object Lock) are never touched;
// the report says when they become deletable.
package expire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/retention"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Asset is one asset of the repository with its rules.
type Asset struct {
	Name  string
	Kind  lifeboat.AssetKind
	Rules retention.Rules
}

// Options shape a run.
type Options struct {
	// Assets are the assets the policy keeps in this repository. Snapshots
	// of any other asset are kept: expire never judges what the policy
	// does not name.
	Assets []Asset
	Grace  time.Duration
	// RepackUnused is passed to repo.Sweep.
	RepackUnused float64
	DryRun       bool
	// LockWait is how long to wait for another expire run to finish.
	LockWait time.Duration
	Log      *slog.Logger
}

// SnapshotVerdict is the outcome for one snapshot.
type SnapshotVerdict struct {
	Asset    string    `json:"asset"`
	ID       string    `json:"id"`
	Type     string    `json:"type"`
	End      time.Time `json:"end"`
	Timeline uint32    `json:"timeline,omitempty"`
	Keep     bool      `json:"keep"`
	Reasons  []string  `json:"reasons"`
	// KeepUntil is when the rules let it go (zero: indefinitely).
	KeepUntil time.Time `json:"keep_until,omitzero"`
	Deleted   bool      `json:"deleted"`
	// RetainedUntil is set when it is due for deletion but under
	// retention until then.
	RetainedUntil time.Time `json:"retained_until,omitzero"`
}

// Report is what a run decided and did.
type Report struct {
	Repository   string                         `json:"repository"`
	DryRun       bool                           `json:"dry_run"`
	Snapshots    []SnapshotVerdict              `json:"snapshots"`
	WAL          map[string][]postgres.WALRange `json:"wal,omitempty"`
	Sweep        *repo.SweepReport              `json:"sweep"`
	LocksRemoved int                            `json:"locks_removed"`
}

// Run expires one repository.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Report, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Repository: r.Location(), DryRun: opts.DryRun, WAL: map[string][]postgres.WALRange{}}
	if !opts.DryRun {
		lock, err := r.LockExpire(ctx, opts.LockWait)
		if err != nil {
			return nil, fmt.Errorf("another expire is running on %s: %w", r.Location(), err)
		}
		defer lock.Unlock()
	}
	now := r.Clock().UTC()
	all, err := r.Snapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	pins, err := r.Pins(ctx)
	if err != nil {
		return nil, err
	}
	byAsset := map[string][]*repo.Snapshot{}
	for _, s := range all {
		byAsset[s.Asset] = append(byAsset[s.Asset], s)
	}
	keepUntil := map[repo.ID]time.Time{}
	judged := map[string]bool{}
	type walJob struct {
		asset string
		kept  []*repo.Snapshot
		base  *repo.Snapshot // the PITR window's base; nil without a window
	}
	var walJobs []walJob
	var doomed []*SnapshotVerdict
	for _, a := range opts.Assets {
		judged[a.Name] = true
		snaps := byAsset[a.Name]
		if len(snaps) == 0 {
			continue
		}
		plan, byID, err := decide(a, snaps, pins, now)
		if err != nil {
			return nil, err
		}
		job := walJob{asset: a.Name}
		for _, d := range plan.Decisions {
			s := byID[d.Snapshot.ID]
			v := SnapshotVerdict{Asset: a.Name, ID: s.ID.String(), Type: s.Type, End: d.Snapshot.End, Timeline: d.Snapshot.Timeline,
				Keep: d.Keep, Reasons: d.Reasons, KeepUntil: d.KeepUntil}
			if p := pins[s.ID]; p != nil && p.Until.After(v.KeepUntil) && !v.KeepUntil.IsZero() {
				v.KeepUntil = p.Until
			}
			if d.Keep {
				keepUntil[s.ID] = v.KeepUntil
				job.kept = append(job.kept, s)
			}
			if d.Snapshot.ID == plan.PITRBase {
				job.base = s
			}
			rep.Snapshots = append(rep.Snapshots, v)
		}
		// Without rules nothing is judged, the archive included.
		if a.Kind == lifeboat.KindPostgres && !a.Rules.IsZero() {
			walJobs = append(walJobs, job)
		}
	}
	for _, s := range all {
		if !judged[s.Asset] {
			rep.Snapshots = append(rep.Snapshots, SnapshotVerdict{Asset: s.Asset, ID: s.ID.String(), Type: s.Type, End: s.EndTime,
				Keep: true, Reasons: []string{"asset not in the policy for this repository"}})
		}
	}
	for i := range rep.Snapshots {
		if !rep.Snapshots[i].Keep {
			doomed = append(doomed, &rep.Snapshots[i])
		}
	}
	// The catalog goes first: once a manifest is gone nothing restores
	// from the snapshot, and its data is only garbage for a later sweep.
	if !opts.DryRun {
		for _, v := range doomed {
			id, _ := repo.ParseID(v.ID)
			err := r.DeleteSnapshot(ctx, id)
			var re *storage.RetainedError
			switch {
			case err == nil:
				v.Deleted = true
				opts.Log.Info("snapshot deleted", "asset", v.Asset, "snapshot", id.Short())
			case errors.As(err, &re):
				v.RetainedUntil = re.Until
			default:
				return rep, err
			}
		}
	}
	for _, j := range walJobs {
		if len(j.kept) == 0 {
			continue
		}
		ranges, err := postgres.ExpireWAL(ctx, r, j.asset, postgres.WALExpireOptions{Kept: j.kept, Base: j.base, DryRun: opts.DryRun, KeepUntil: keepUntil})
		rep.WAL[j.asset] = ranges
		if err != nil {
			return rep, err
		}
	}
	sw, err := r.Sweep(ctx, repo.SweepOptions{Grace: opts.Grace, DryRun: opts.DryRun, Snapshots: all, KeepUntil: keepUntil, RepackUnused: opts.RepackUnused})
	rep.Sweep = sw
	if err != nil {
		return rep, err
	}
	if !opts.DryRun {
		if rep.LocksRemoved, err = r.CleanLocks(ctx); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// decide applies an asset's rules. PostgreSQL snapshots are ordered by the
// moment they are consistent at and their timeline, read from the
// manifest, never by name.
func decide(a Asset, snaps []*repo.Snapshot, pins map[repo.ID]*repo.Pin, now time.Time) (retention.Plan, map[string]*repo.Snapshot, error) {
	in := make([]retention.Snapshot, 0, len(snaps))
	byID := make(map[string]*repo.Snapshot, len(snaps))
	for _, s := range snaps {
		rs := retention.Snapshot{ID: s.ID.String(), End: s.EndTime}
		if s.Kind == postgres.Kind {
			info, err := postgres.Info(s)
			if err != nil {
				return retention.Plan{}, nil, fmt.Errorf("snapshot %s of %s: %w", s.ID.Short(), a.Name, err)
			}
			rs.End, rs.Timeline = info.StopTime, info.Timeline
		}
		if p := pins[s.ID]; p != nil {
			rs.Pinned, rs.PinReason = true, p.Reason
		}
		in = append(in, rs)
		byID[rs.ID] = s
	}
	return retention.Decide(in, a.Rules, now), byID, nil
}
