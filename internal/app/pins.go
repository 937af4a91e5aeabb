package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
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
func (s *Service) Unpin(ctx context.Context, repository, id string) ([]Unpinned, error) {
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
