package app

import (
	"context"
	"fmt"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// RemoveKey retires a key object of a repository (repo remove-key): the
// key file or passphrase it wraps the master key for opens the repository
// no more. A protected action when the policy lists key_remove.
func (s *Service) RemoveKey(ctx context.Context, repository, key string) (err error) {
	defer s.audited(ctx, audit.TypeKeyRemove, "", repository)(&err, func(e *audit.Event) []*audit.Event {
		e.Details = map[string]string{"key": key}
		return nil
	})
	key = strings.TrimPrefix(key, "keys/")
	rp, err := s.Policy.Repository(repository)
	if err != nil {
		return &asset.UsageError{Err: err}
	}
	if err := s.authorize(ctx, gate{action: policy.ActionKeyRemove, home: rp,
		args: []approval.Arg{{Name: "repository", Value: rp.Name}, {Name: "key", Value: key}}}); err != nil {
		return err
	}
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return err
	}
	if err := r.RemoveKey(ctx, key); err != nil {
		return fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	return nil
}

// KeyRow is one key object of a repository.
type KeyRow struct {
	Key string `json:"key"`
	// Current says this run opened the repository with it (the policy's
	// key_file or passphrase).
	Current bool `json:"current"`
}

// Keys lists a repository's key objects.
func (s *Service) Keys(ctx context.Context, repository string) ([]KeyRow, error) {
	rp, r, err := s.RepositoryNamed(ctx, repository)
	if err != nil {
		return nil, err
	}
	names, err := r.Keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	rows := []KeyRow{}
	for _, n := range names {
		rows = append(rows, KeyRow{Key: strings.TrimPrefix(n, "keys/"), Current: n == r.KeyName()})
	}
	return rows, nil
}
