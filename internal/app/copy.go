package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Copied is one primary mirrored into one copy.
type Copied struct {
	From, To string
	Stats    repo.CopyStats
}

// Copy brings the copy repositories of the asset (every asset when "")
// up to date: first what this host's copy queues hold, then, unless
// queuedOnly, a full mirror of each primary into each copy. A background
// drainer (queuedOnly) leaves a queue another drainer holds; a full copy
// waits for it, so that it reports every failure.
func (s *Service) Copy(ctx context.Context, assetName string, queuedOnly bool) (copied []Copied, err error) {
	defer s.auditedCopy(ctx, assetName, queuedOnly)(&err, &copied)
	assets, err := SelectAssets(s.Policy, assetName)
	if err != nil {
		return nil, err
	}
	var copies []*policy.Repository
	for _, a := range assets {
		rps, err := s.Policy.AssetRepositories(a)
		if err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		for _, cp := range rps[1:] {
			if !slices.Contains(copies, cp) {
				copies = append(copies, cp)
			}
		}
	}
	if err := s.DrainQueues(ctx, copies, !queuedOnly); err != nil || queuedOnly {
		return nil, err
	}
	var out []Copied
	done := make(map[[2]string]bool)
	for _, a := range assets {
		rps, err := s.Policy.AssetRepositories(a)
		if err != nil {
			return out, &asset.UsageError{Err: err}
		}
		for _, cp := range rps[1:] {
			pair := [2]string{rps[0].Name, cp.Name}
			if done[pair] {
				continue
			}
			done[pair] = true
			src, err := s.Repository(ctx, rps[0])
			if err != nil {
				return out, err
			}
			c, err := s.SyncCopy(ctx, src, rps[0], cp)
			if err != nil {
				return out, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// SyncCopy mirrors the primary src (the repository rp) into the copy cp.
func (s *Service) SyncCopy(ctx context.Context, src *repo.Repository, rp, cp *policy.Repository) (Copied, error) {
	c := Copied{From: rp.Name, To: cp.Name}
	dst, err := OpenBackend(ctx, cp)
	if err != nil {
		return c, err
	}
	defer dst.Close()
	if c.Stats, err = src.Sync(ctx, dst); err != nil {
		return c, fmt.Errorf("copy %s to %s: %w", rp.Name, cp.Name, err)
	}
	return c, nil
}

// OpenCopyQueues opens (creating) the queues of an asset's copies; none
// when the asset has no copies.
func OpenCopyQueues(p *policy.Policy, a *policy.Asset) ([]*copyqueue.Queue, error) {
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	var qs []*copyqueue.Queue
	for _, cp := range rps[1:] {
		q, err := copyqueue.Open(QueueDir(p, cp))
		if err != nil {
			return nil, fmt.Errorf("copy %s (state_dir %s): %w", cp.Name, p.StateDir, err)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// EnqueueAll is what a pushed or streamed file is handed to once stored:
// it adds the stored object to every copy queue of qs. nil for no queues,
// so the caller queues nothing.
func EnqueueAll(qs []*copyqueue.Queue) func(name string, stored []byte) error {
	if len(qs) == 0 {
		return nil
	}
	return func(name string, stored []byte) error {
		for _, q := range qs {
			if err := q.Add(name, stored); err != nil {
				return err
			}
		}
		return nil
	}
}

// DrainQueues sends what the queues of the copy repositories hold. With
// wait false a queue another drainer holds is left to it. Queues are
// drained side by side, so a slow copy does not hold back the others. A
// failure is recorded in the queue for status, and returned.
func (s *Service) DrainQueues(ctx context.Context, copies []*policy.Repository, wait bool) error {
	var wg sync.WaitGroup
	errs := make([]error, len(copies))
	for i, cp := range copies {
		dir := QueueDir(s.Policy, cp)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			continue // nothing was ever queued for it on this host
		}
		q, err := copyqueue.Open(dir)
		if err != nil {
			errs[i] = err
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := s.drainQueue(ctx, cp, q, wait)
			if errors.Is(err, copyqueue.ErrBusy) {
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("copy to %s: %w", cp.Name, err)
				return
			}
			if n > 0 {
				s.Log.Info("copied queued objects", "repository", cp.Name, "objects", n)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Service) drainQueue(ctx context.Context, cp *policy.Repository, q *copyqueue.Queue, wait bool) (int, error) {
	primary := s.Policy.PrimaryOf(cp.Name)
	if primary == nil {
		err := fmt.Errorf("no asset has %s as a copy", cp.Name)
		q.RecordError(err)
		return 0, err
	}
	// The copy is opened as a repository: it shares the primary's key,
	// with which every object is authenticated before it is written.
	cr, err := s.Repository(ctx, cp)
	if err != nil {
		q.RecordError(err)
		return 0, err
	}
	dst := cr.Backend()
	// The primary is opened only for entries that hold names only: the
	// others reach the copy even while the primary is out of reach.
	var src storage.Backend
	defer func() {
		if src != nil {
			src.Close()
		}
	}()
	return q.Drain(ctx, wait, func(ctx context.Context, name string, stored []byte) error {
		if stored == nil && src == nil {
			if src, err = OpenBackend(ctx, primary); err != nil {
				return err
			}
		}
		return cr.CopyQueued(ctx, src, dst, name, stored)
	})
}
