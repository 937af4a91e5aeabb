package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// StreamedAssets are the assets of the policy whose kind streams and
// whose policy turns streaming on.
func (s *Service) StreamedAssets() []*policy.Asset {
	var out []*policy.Asset
	for i := range s.Policy.Assets {
		a := &s.Policy.Assets[i]
		k, err := s.Kinds.Kind(a.Kind)
		if err != nil {
			continue
		}
		if st, ok := k.(asset.Streamer); ok && st.Streams(a) {
			out = append(out, a)
		}
	}
	return out
}

// Stream runs the stream of one asset (lifeboat serve runs one per asset
// that turns it on) into its primary repository, queueing what it stores
// for the copies as wal-push does, until ctx ends.
func (s *Service) Stream(ctx context.Context, name string) error {
	a, k, err := s.Asset(name)
	if err != nil {
		return err
	}
	st, ok := k.(asset.Streamer)
	if !ok {
		return asset.Usagef("asset %s is of kind %s, which does not stream; kinds that do: %s", a.Name, a.Kind,
			s.kindsWith(func(k asset.Kind) bool { _, ok := k.(asset.Streamer); return ok }))
	}
	r, _, err := s.AssetRepository(ctx, a, "")
	if err != nil {
		return err
	}
	queues, err := OpenCopyQueues(s.Policy, a)
	if err != nil {
		return fmt.Errorf("stream %s: %w", a.Name, err)
	}
	enqueue := EnqueueAll(queues)
	dir := filepath.Join(s.Policy.StateDir, "stream", a.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("stream %s: %w", a.Name, err)
	}
	return st.Stream(ctx, &asset.Stream{Asset: a, Repo: r, StateDir: dir, Log: s.Log.With("asset", a.Name), Stored: enqueue})
}

// StreamAll runs the streams of every asset that turns streaming on, side
// by side, until ctx ends; a stream that stops on an error it cannot cure
// (another cluster's server) is logged and the others go on.
func (s *Service) StreamAll(ctx context.Context) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, a := range s.StreamedAssets() {
		wg.Go(func() {
			err := s.Stream(ctx, a.Name)
			if err != nil && !errors.Is(err, context.Canceled) {
				s.Log.Error("WAL stream stopped", "asset", a.Name, "error", err)
				mu.Lock()
				errs = append(errs, fmt.Errorf("stream %s: %w", a.Name, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// slotFacts reads the slot of an asset that streams; nil for the others.
func (s *Service) slotFacts(ctx context.Context, a *policy.Asset) *health.SlotFacts {
	if a == nil {
		return nil
	}
	k, err := s.Kinds.Kind(a.Kind)
	if err != nil {
		return nil
	}
	st, ok := k.(asset.Streamer)
	if !ok || !st.Streams(a) {
		return nil
	}
	ss := st.StreamState(ctx, a)
	return &health.SlotFacts{Slot: ss.Slot, Exists: ss.Exists, Active: ss.Active, WALStatus: ss.WALStatus,
		RetainedBytes: ss.RetainedBytes, SafeBytes: ss.SafeBytes, MaxRetained: ss.MaxRetained, Error: ss.Error}
}
