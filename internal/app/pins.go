package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Unpinned is a hold removed from one repository.
type Unpinned struct {
	Repository *policy.Repository
	Snapshot   *repo.Snapshot
}

// Unpin removes the legal hold on snapshot id (an ID or a unique prefix)
// in the repository named, or in every repository of the policy that
// holds the snapshot. Removing a hold is protected by approvals (unpin):
// one approval covers the snapshot in every repository named.
func (s *Service) Unpin(ctx context.Context, repository, id string) (_ []Unpinned, err error) {
	defer s.audited(ctx, audit.TypeUnpin, "", repository)(&err, func(e *audit.Event) []*audit.Event {
		e.Snapshot = id
		return nil
	})
	rps, err := NamedOrAllRepositories(s.Policy, repository)
	if err != nil {
		return nil, err
	}
	var hits []Unpinned
	for _, rp := range rps {
		r, err := s.Repository(ctx, rp)
		if err != nil {
			return nil, err
		}
		snap, err := r.FindSnapshot(ctx, id)
		if errors.Is(err, storage.ErrNotFound) && repository == "" {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		hits = append(hits, Unpinned{Repository: rp, Snapshot: snap})
	}
	if len(hits) == 0 {
		return nil, fmt.Errorf("no repository of the policy holds snapshot %q", id)
	}
	snap := hits[0].Snapshot
	if err := s.authorize(ctx, gate{action: policy.ActionUnpin, asset: snap.Asset, home: hits[0].Repository,
		args: []approval.Arg{{Name: "snapshot", Value: snap.ID.String()}, {Name: "repository", Value: repository}}}); err != nil {
		return nil, err
	}
	var done []Unpinned
	for _, h := range hits {
		r, err := s.Repository(ctx, h.Repository)
		if err != nil {
			return done, err
		}
		if err := r.UnpinSnapshot(ctx, h.Snapshot.ID); err != nil {
			return done, fmt.Errorf("repository %s: %w", h.Repository.Name, err)
		}
		done = append(done, h)
	}
	return done, nil
}

// Pinned is a hold placed (or found placed already) in one repository.
type Pinned struct {
	Repository *policy.Repository
	Snapshot   *repo.Snapshot
	Pin        *repo.Pin // nil when it was pinned already
}

// PinSnapshot places a legal hold with reason on snapshot id (an ID or a
// unique prefix) of asset in every repository of the asset that holds it
// (an incident snapshot: backup --pin). A copy that does not hold the
// snapshot yet gets the hold with it: a copy carries pins/ (repo.Sync).
func (s *Service) PinSnapshot(ctx context.Context, assetName, id, reason string, until time.Time) (out []Pinned, err error) {
	defer s.auditedPin(ctx, assetName, "", id, reason, until)(&err)
	a, _, err := s.Asset(assetName)
	if err != nil {
		return nil, err
	}
	rps, err := s.Policy.AssetRepositories(a)
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	out, err = s.pin(ctx, rps, false, id, reason, until)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no repository of asset %s holds snapshot %q", assetName, id)
	}
	return out, err
}

// Pin places a legal hold with reason on snapshot id (an ID or a unique
// prefix) in the repository named, or in every repository of the policy
// that holds the snapshot (lifeboat pin).
func (s *Service) Pin(ctx context.Context, repository, id, reason string, until time.Time) (out []Pinned, err error) {
	defer s.auditedPin(ctx, "", repository, id, reason, until)(&err)
	rps, err := NamedOrAllRepositories(s.Policy, repository)
	if err != nil {
		return nil, err
	}
	out, err = s.pin(ctx, rps, repository != "", id, reason, until)
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no repository of the policy holds snapshot %q", id)
	}
	return out, err
}

// auditedPin audits a hold placed, with its reason and end.
func (s *Service) auditedPin(ctx context.Context, assetName, repository, id, reason string, until time.Time) func(errp *error) {
	done := s.audited(ctx, audit.TypePin, assetName, repository)
	return func(errp *error) {
		done(errp, func(e *audit.Event) []*audit.Event {
			e.Snapshot = id
			e.Details = map[string]string{"reason": reason}
			if !until.IsZero() {
				e.Details["until"] = until.Format(time.DateOnly)
			}
			return nil
		})
	}
}

// pin holds snapshot id in each of rps that has it; a repository where it
// is pinned already counts as done. With named, a repository that lacks
// the snapshot is an error rather than skipped. The hold records the
// reason and who placed it (user@host).
func (s *Service) pin(ctx context.Context, rps []*policy.Repository, named bool, id, reason string, until time.Time) (out []Pinned, err error) {
	if strings.TrimSpace(reason) == "" {
		return nil, asset.Usagef("a hold needs a reason: who asked for it, and why")
	}
	for _, rp := range rps {
		r, err := s.Repository(ctx, rp)
		if err != nil {
			return out, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		snap, err := r.FindSnapshot(ctx, id)
		if errors.Is(err, storage.ErrNotFound) && !named {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		p, err := r.PinSnapshot(ctx, snap.ID, reason, until)
		if err != nil && !errors.Is(err, repo.ErrPinned) {
			return out, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		out = append(out, Pinned{Repository: rp, Snapshot: snap, Pin: p})
	}
	return out, nil
}
