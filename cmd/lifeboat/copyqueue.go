package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// openCopyQueues opens (creating) the queues of an asset's copies; none
// when the asset has no copies.
func openCopyQueues(p *policy.Policy, a *policy.Asset) ([]*copyqueue.Queue, error) {
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return nil, &usageError{Err: err}
	}
	var qs []*copyqueue.Queue
	for _, cp := range rps[1:] {
		q, err := copyqueue.Open(app.QueueDir(p, cp))
		if err != nil {
			return nil, fmt.Errorf("copy %s (state_dir %s): %w", cp.Name, p.StateDir, err)
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// startDrainer starts `lifeboat copy --queued` in the background, detached
// from archive_command, unless every queue already has a drainer. A queue
// busy now is still drained of what was just added: a drainer looks again
// after it lets go.
func (g *globalOptions) startDrainer(qs []*copyqueue.Queue) error {
	idle := false
	for _, q := range qs {
		busy, err := q.Busy()
		if err != nil {
			return err
		}
		idle = idle || !busy
	}
	if !idle {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg, err := filepath.Abs(g.configPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-c", cfg, "copy", "--queued")
	// Its own session: PostgreSQL neither waits for it nor signals it
	// with the archiver's process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the copy drainer: %w", err)
	}
	return cmd.Process.Release()
}

// drainQueues sends what the queues of the copy repositories hold. With
// wait false a queue another drainer holds is left to it. Queues are
// drained side by side, so a slow copy does not hold back the others. A
// failure is recorded in the queue for status, and returned.
func (g *globalOptions) drainQueues(ctx context.Context, p *policy.Policy, copies []*policy.Repository, wait bool) error {
	var wg sync.WaitGroup
	errs := make([]error, len(copies))
	for i, cp := range copies {
		dir := app.QueueDir(p, cp)
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
			n, err := g.drainQueue(ctx, p, cp, q, wait)
			if errors.Is(err, copyqueue.ErrBusy) {
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("copy to %s: %w", cp.Name, err)
				return
			}
			if n > 0 {
				g.log.Info("copied queued objects", "repository", cp.Name, "objects", n)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (g *globalOptions) drainQueue(ctx context.Context, p *policy.Policy, cp *policy.Repository, q *copyqueue.Queue, wait bool) (int, error) {
	primary := primaryOf(p, cp)
	if primary == nil {
		err := fmt.Errorf("no asset has %s as a copy", cp.Name)
		q.RecordError(err)
		return 0, err
	}
	dst, err := app.OpenBackend(ctx, cp)
	if err != nil {
		q.RecordError(err)
		return 0, err
	}
	defer dst.Close()
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
			if src, err = app.OpenBackend(ctx, primary); err != nil {
				return err
			}
		}
		return repo.CopyQueued(ctx, src, dst, name, stored)
	})
}
