package app

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/expire"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// What each action's event records besides the common fields. Each
// finisher reads the action's named result when the action has returned.

func backupIDs(out **BackupResult) finisher {
	return func(e *audit.Event) []*audit.Event {
		res := *out
		if res == nil {
			return nil
		}
		if res.Repository != nil {
			e.Repository = res.Repository.Name
		}
		e.Snapshot = snapshotID(res.Snapshot)
		if res.Snapshot != nil {
			e.Details = map[string]string{"snapshot_type": string(res.Snapshot.Type)}
		}
		return nil
	}
}

func restoreIDs(out **asset.Restored, req RestoreRequest) finisher {
	return func(e *audit.Event) []*audit.Event {
		e.Details = map[string]string{"to": req.To}
		if req.Snapshot != "" {
			e.Details["snapshot_asked"] = req.Snapshot
		}
		if !req.AsOf.IsZero() {
			e.Details["repository_as_of"] = req.AsOf.UTC().Format(time.RFC3339)
		}
		if res := *out; res != nil {
			e.Snapshot = snapshotID(res.Snapshot)
		}
		return nil
	}
}

func drillIDs(out **evidence.DrillReport) finisher {
	return func(e *audit.Event) []*audit.Event {
		rep := *out
		if rep == nil {
			return nil
		}
		e.Snapshot = rep.Snapshot
		e.Details = map[string]string{"drill": rep.ID, "passed": strconv.FormatBool(rep.Passed)}
		return nil
	}
}

func verifyIDs(out **Verified) finisher {
	return func(e *audit.Event) []*audit.Event {
		if v := *out; v != nil {
			e.Details = map[string]string{"problems": strconv.Itoa(len(v.Problems)), "wal_files": strconv.Itoa(v.WALFiles)}
			if len(v.Problems) > 0 && e.Outcome == audit.OK {
				e.Outcome = audit.Failed
				e.Error = strconv.Itoa(len(v.Problems)) + " problems found"
			}
		}
		return nil
	}
}

// expireIDs adds an event for each deletion the expire made: each
// snapshot, each WAL range, the packs its sweep deleted, and the audit
// seals older than the audit retention it removed (expireSeals).
func (s *Service) expireIDs(ctx context.Context, out **expire.Report, rp *policy.Repository, o *ExpireOptions) finisher {
	return func(e *audit.Event) []*audit.Event {
		rep := *out
		e.Details = map[string]string{"dry_run": strconv.FormatBool(o.DryRun)}
		if rep == nil || rep.DryRun {
			return nil
		}
		del := func(assetName string, details map[string]string) *audit.Event {
			return &audit.Event{Type: audit.TypeDelete, Asset: assetName, Repository: rp.Name, Start: e.Start, Time: e.Time,
				Outcome: audit.OK, Details: details}
		}
		var more []*audit.Event
		for _, s := range rep.Snapshots {
			if s.Deleted {
				d := del(s.Asset, map[string]string{"object": "snapshot", "rule": "retention"})
				d.Snapshot = s.ID
				more = append(more, d)
			}
		}
		for assetName, ranges := range rep.WAL {
			for _, wr := range ranges {
				if wr.Deleted > 0 {
					more = append(more, del(assetName, map[string]string{"object": "wal", "first": wr.First, "last": wr.Last,
						"files": strconv.Itoa(wr.Deleted), "rule": wr.Rule}))
				}
			}
		}
		if sw := rep.Sweep; sw != nil && len(sw.Deleted) > 0 {
			more = append(more, del("", map[string]string{"object": "packs", "packs": strconv.Itoa(len(sw.Deleted)),
				"bytes": strconv.FormatInt(sw.BytesFreed, 10)}))
		}
		if n, err := s.expireSeals(ctx, rp); err != nil {
			s.Log.Warn("expire: old audit seals not removed", "repository", rp.Name, "error", err)
		} else if n > 0 {
			more = append(more, del("", map[string]string{"object": "audit seals", "seals": strconv.Itoa(n),
				"older_than": s.auditRetention().String()}))
		}
		e.Details["deletions"] = strconv.Itoa(len(more))
		return more
	}
}

func forgetIDs(snap **repo.Snapshot) finisher {
	return func(e *audit.Event) []*audit.Event {
		if s := *snap; s != nil {
			e.Snapshot = s.ID.String()
			e.Details = map[string]string{"snapshot_asset": s.Asset}
		}
		return nil
	}
}

// auditedCopy audits a copy asked for; the background drain of the copy
// queues (queuedOnly), which follows every WAL push and backup, is part
// of the action that queued, and is not an event of its own.
func (s *Service) auditedCopy(ctx context.Context, assetName string, queuedOnly bool) func(errp *error, copied *[]Copied) {
	if queuedOnly {
		return func(*error, *[]Copied) {}
	}
	done := s.audited(ctx, audit.TypeCopy, assetName, "")
	return func(errp *error, copied *[]Copied) {
		done(errp, func(e *audit.Event) []*audit.Event {
			e.Details = map[string]string{}
			for _, c := range *copied {
				e.Details[c.From+"->"+c.To] = strconv.Itoa(c.Stats.Objects) + " objects"
			}
			return nil
		})
	}
}

// expireSeals removes the audit seals of rp the store wrote longer ago
// than the audit retention, keeping the newest of each chain whatever its
// age: every later seal's hash vouches for the events before it, so the
// chain stays verifiable, only less finely. A seal still under retention
// (Object Lock) is left for a later expire.
func (s *Service) expireSeals(ctx context.Context, rp *policy.Repository) (int, error) {
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return 0, err
	}
	seals, err := r.AuditSeals(ctx)
	if err != nil {
		return 0, err
	}
	newest := map[string]string{}
	for _, in := range seals {
		if in.Rel > newest[in.Chain] {
			newest[in.Chain] = in.Rel
		}
	}
	cutoff := s.Now().Add(-s.auditRetention())
	n := 0
	for _, in := range seals {
		if in.Rel == newest[in.Chain] || in.Time.IsZero() || !in.Time.Before(cutoff) {
			continue
		}
		if err := r.DeleteAuditSeal(ctx, in.Chain, in.Rel); err != nil {
			if errors.Is(err, storage.ErrRetained) {
				continue
			}
			return n, err
		}
		n++
	}
	return n, nil
}
