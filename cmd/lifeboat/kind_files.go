package main

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/files"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// The files kind: directories and files with their metadata (see
// docs/files.md).

func init() {
	kindBackups[lifeboat.KindFiles] = backupFiles
	kindRestores[lifeboat.KindFiles] = restoreFiles
}

func backupFiles(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error) {
	snap, info, err := files.Backup(ctx, r, files.BackupOptions{Asset: a.Name, Paths: a.Paths, Exclude: a.Exclude,
		LockWait: o.lockWait, Log: g.log})
	if errors.Is(err, files.ErrPaths) {
		return nil, &usageError{err}
	}
	if err != nil {
		return nil, err
	}
	// Each skipped file was logged as it was met; this line stays when
	// the log level hides warnings from cron mail.
	var left []string
	for _, c := range []struct {
		n    int64
		what string
	}{{info.Special, "sockets, pipes or devices skipped"}, {info.Vanished, "vanished while backed up (left out)"},
		{info.ChangedCount, "kept changing while read (stored as last read)"}} {
		if c.n > 0 {
			left = append(left, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(g.stderr, "warning: %s\n", strings.Join(left, ", "))
	}
	return snap, nil
}

func restoreFiles(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, o restoreOptions) error {
	if o.to == "" {
		return usagef("restore of a files asset needs --to DIR (a file backed up as /etc/x is written to DIR/etc/x)")
	}
	if err := o.refuseFlags(lifeboat.KindFiles, "--to, --path, --delta, --snapshot, --owner, --repository", "--path", "--delta"); err != nil {
		return err
	}
	if o.path != "" && !filepath.IsAbs(o.path) {
		return usagef("--path %q: give the path as it was backed up, absolute (like /etc/drop/app.conf)", o.path)
	}
	dir, err := filepath.Abs(o.to)
	if err != nil {
		return err
	}
	uid, gid := -1, -1
	if o.owner != "" {
		u, err := user.Lookup(o.owner)
		if err != nil {
			return usagef("--owner: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	bar := newProgressLine(g)
	defer bar.done()
	start := time.Now()
	res, err := files.Restore(ctx, r, s, files.RestoreOptions{Dir: dir, Path: o.path, Delta: o.delta, UID: uid, GID: gid,
		Workers: o.workers, Progress: func(w int64) {
			bar.set(fmt.Sprintf("restore %s: %s written", a.Name, humanBytes(w)))
		}})
	bar.done()
	if errors.Is(err, files.ErrNotInSnapshot) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "restored snapshot %s of %s to %s: %d files (%d entries), %s written in %s\n",
		s.ID.Short(), a.Name, dir, res.Stats.Files, res.Nodes, humanBytes(res.Stats.BytesWritten),
		time.Since(start).Round(time.Millisecond))
	if o.path != "" {
		fmt.Fprintf(g.stdout, "%s is at %s\n", filepath.Clean(o.path), res.Target)
	}
	return nil
}
