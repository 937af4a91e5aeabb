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
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/retention"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Asset is one asset of the repository with its rules.
type Asset struct {
	Name string
	// Kind decides how the asset's snapshots are ordered and whether it
	// keeps an archive of logs between them (asset.PITR).
	Kind  asset.Kind
	Rules retention.Rules
}

// How far a snapshot's own end time may stray from the time the store
// received its manifest before retention stops trusting it: a little
// ahead for clock skew, and behind by as much as a copy may lag or a
// backup may take to commit after its consistent point. A snapshot
// outside these bounds is kept, takes no retention slot, and is reported.
const (
	StoreSkew = 15 * time.Minute
	StoreLag  = 24 * time.Hour
)

// replans is how often a run plans again when snapshots appear while it
// plans, before it gives up without deleting anything.
const replans = 3

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
	// Untrusted says why the snapshot took no part in retention: its
	// times disagree with the store's, or its tree does not check out.
	Untrusted string `json:"untrusted,omitempty"`
}

// Report is what a run decided and did.
type Report struct {
	Repository   string                          `json:"repository"`
	DryRun       bool                            `json:"dry_run"`
	Snapshots    []SnapshotVerdict               `json:"snapshots"`
	WAL          map[string][]asset.ArchiveRange `json:"wal,omitempty"`
	Sweep        *repo.SweepReport               `json:"sweep"`
	LocksRemoved int                             `json:"locks_removed"`
}

// walJob is the archive expiry of one asset with a PITR capability.
type walJob struct {
	asset string
	pitr  asset.PITR
	kept  []*repo.Snapshot
	base  *repo.Snapshot // the PITR window's base; nil without a window
}

// plan is what a run decided before it deletes anything.
type plan struct {
	all       []*repo.Snapshot
	verdicts  []SnapshotVerdict
	keepUntil map[repo.ID]time.Time
	walJobs   []walJob
}

// Run expires one repository.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Report, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rep := &Report{Repository: r.Location(), DryRun: opts.DryRun, WAL: map[string][]asset.ArchiveRange{}}
	if !opts.DryRun {
		lock, err := r.LockExpire(ctx, opts.LockWait)
		if err != nil {
			return nil, fmt.Errorf("another expire is running on %s: %w", r.Location(), err)
		}
		defer lock.Unlock()
	}
	p, err := planStable(ctx, r, opts)
	if err != nil {
		return nil, err
	}
	rep.Snapshots = p.verdicts
	for _, v := range rep.Snapshots {
		if v.Untrusted != "" {
			opts.Log.Warn("snapshot kept but not trusted: it takes no retention slot", "asset", v.Asset, "snapshot", v.ID, "why", v.Untrusted)
		}
	}
	// The catalog goes first: once a manifest is gone nothing restores
	// from the snapshot, and its data is only garbage for a later sweep.
	if !opts.DryRun {
		for i := range rep.Snapshots {
			v := &rep.Snapshots[i]
			if v.Keep {
				continue
			}
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
	for _, j := range p.walJobs {
		if len(j.kept) == 0 {
			continue
		}
		ranges, err := j.pitr.ExpireArchive(ctx, r, j.asset, asset.ArchiveExpiry{Kept: j.kept, Base: j.base, DryRun: opts.DryRun, KeepUntil: p.keepUntil})
		rep.WAL[j.asset] = ranges
		if err != nil {
			return rep, err
		}
	}
	sw, err := r.Sweep(ctx, repo.SweepOptions{Grace: opts.Grace, DryRun: opts.DryRun, Snapshots: p.all, KeepUntil: p.keepUntil, RepackUnused: opts.RepackUnused})
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

// planStable plans, then lists the snapshots again: a plan made while
// snapshots appeared (a backup committing, or a writer trying to steer
// retention) is made again, and after a few rounds the run gives up
// without deleting anything.
func planStable(ctx context.Context, r *repo.Repository, opts Options) (*plan, error) {
	for round := 1; ; round++ {
		p, err := makePlan(ctx, r, opts)
		if err != nil {
			return nil, err
		}
		ids, err := r.SnapshotIDs(ctx)
		if err != nil {
			return nil, err
		}
		appeared := newSnapshots(p.all, ids)
		if len(appeared) == 0 {
			return p, nil
		}
		if round == replans {
			return nil, fmt.Errorf("expire %s: snapshots kept appearing while the plan was made (last %s); nothing was deleted, run expire again: %w",
				r.Location(), strings.Join(appeared, ", "), repo.ErrConflict)
		}
		opts.Log.Info("snapshots appeared while planning; planning again", "snapshots", strings.Join(appeared, ", "))
	}
}

// newSnapshots lists the IDs in ids that the plan did not see.
func newSnapshots(planned []*repo.Snapshot, ids []repo.ID) []string {
	seen := make(map[repo.ID]bool, len(planned))
	for _, s := range planned {
		seen[s.ID] = true
	}
	var out []string
	for _, id := range ids {
		if !seen[id] {
			out = append(out, id.Short())
		}
	}
	return out
}

// makePlan decides, for every asset the options name, which snapshots
// stay and which archives need expiring.
func makePlan(ctx context.Context, r *repo.Repository, opts Options) (*plan, error) {
	now := r.Clock().UTC()
	all, err := r.Snapshots(ctx, "")
	if err != nil {
		return nil, err
	}
	pins, err := r.Pins(ctx)
	if err != nil {
		return nil, err
	}
	stored, err := r.SnapshotStoreTimes(ctx)
	if err != nil {
		return nil, err
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	byAsset := map[string][]*repo.Snapshot{}
	for _, s := range all {
		byAsset[s.Asset] = append(byAsset[s.Asset], s)
	}
	p := &plan{all: all, keepUntil: map[repo.ID]time.Time{}}
	judged := map[string]bool{}
	for _, a := range opts.Assets {
		judged[a.Name] = true
		snaps := byAsset[a.Name]
		if len(snaps) == 0 {
			continue
		}
		rp, byID, err := decide(ctx, r, idx, a, snaps, pins, stored, now)
		if err != nil {
			return nil, err
		}
		pitr, _ := a.Kind.(asset.PITR)
		job := walJob{asset: a.Name, pitr: pitr}
		for _, d := range rp.Decisions {
			s := byID[d.Snapshot.ID]
			v := SnapshotVerdict{Asset: a.Name, ID: s.ID.String(), Type: s.Type, End: d.Snapshot.End, Timeline: d.Snapshot.Timeline,
				Keep: d.Keep, Reasons: d.Reasons, KeepUntil: d.KeepUntil, Untrusted: d.Snapshot.Untrusted}
			if pin := pins[s.ID]; pin != nil && pin.Until.After(v.KeepUntil) && !v.KeepUntil.IsZero() {
				v.KeepUntil = pin.Until
			}
			if d.Keep {
				p.keepUntil[s.ID] = v.KeepUntil
				job.kept = append(job.kept, s)
			}
			if d.Snapshot.ID == rp.PITRBase {
				job.base = s
			}
			p.verdicts = append(p.verdicts, v)
		}
		// Without rules nothing is judged, the archive included.
		if pitr != nil && !a.Rules.IsZero() {
			p.walJobs = append(p.walJobs, job)
		}
	}
	for _, s := range all {
		if !judged[s.Asset] {
			p.verdicts = append(p.verdicts, SnapshotVerdict{Asset: s.Asset, ID: s.ID.String(), Type: s.Type, End: s.EndTime,
				Keep: true, Reasons: []string{"asset not in the policy for this repository"}})
		}
	}
	return p, nil
}

// decide applies an asset's rules. Snapshots of a PITR kind are ordered by
// the moment they are consistent at and their timeline, read from the
// manifest, never by name. A snapshot whose time the store does not vouch
// for, or whose tree does not check out, is kept out of the rules.
func decide(ctx context.Context, r *repo.Repository, idx *repo.Index, a Asset, snaps []*repo.Snapshot, pins map[repo.ID]*repo.Pin,
	stored map[repo.ID]time.Time, now time.Time) (retention.Plan, map[string]*repo.Snapshot, error) {
	in := make([]retention.Snapshot, 0, len(snaps))
	byID := make(map[string]*repo.Snapshot, len(snaps))
	pitr, _ := a.Kind.(asset.PITR)
	for _, s := range snaps {
		rs := retention.Snapshot{ID: s.ID.String(), End: s.EndTime}
		if pitr != nil {
			at, tli, err := pitr.SnapshotPoint(s)
			if err != nil {
				return retention.Plan{}, nil, fmt.Errorf("snapshot %s of %s: %w", s.ID.Short(), a.Name, err)
			}
			rs.End, rs.Timeline = at, tli
		}
		if p := pins[s.ID]; p != nil {
			rs.Pinned, rs.PinReason = true, p.Reason
		}
		rs.Untrusted = storeDisagrees(rs.End, stored[s.ID])
		if rs.Untrusted == "" && !a.Rules.IsZero() {
			if err := r.CheckSnapshotTree(ctx, idx, s); err != nil {
				if ctx.Err() != nil {
					return retention.Plan{}, nil, ctx.Err()
				}
				rs.Untrusted = err.Error()
			}
		}
		in = append(in, rs)
		byID[rs.ID] = s
	}
	return retention.Decide(in, a.Rules, now), byID, nil
}

// storeDisagrees says why a snapshot claiming to end at end cannot have
// been stored at the store's time stored; "" when the two agree, or when
// the store gives no time.
func storeDisagrees(end, stored time.Time) string {
	switch {
	case stored.IsZero():
		return ""
	case end.After(stored.Add(StoreSkew)):
		return fmt.Sprintf("it claims to end at %s, after the store received it (%s)", lifeboat.FormatTime(end), lifeboat.FormatTime(stored))
	case stored.Sub(end) > StoreLag:
		return fmt.Sprintf("it claims to end at %s, but the store received it only at %s, more than %s later",
			lifeboat.FormatTime(end), lifeboat.FormatTime(stored), strings.TrimSuffix(StoreLag.String(), "0m0s"))
	}
	return ""
}
