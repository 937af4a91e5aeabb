package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/gitrepo"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

func init() {
	kindBackups[lifeboat.KindGit] = backupGit
	kindRestores[lifeboat.KindGit] = restoreGit
}

// gitMirrorDir is where the mirrors of a git asset are kept between runs.
func gitMirrorDir(p *policy.Policy, a *policy.Asset) string {
	return filepath.Join(p.StateDir, "git-mirrors", a.Name)
}

// backupGit mirrors every remote of the asset and stores the mirrors as
// one snapshot (each a whole repository, so --full changes nothing).
func backupGit(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, o backupOptions) (*repo.Snapshot, error) {
	p, err := g.policy()
	if err != nil {
		return nil, err
	}
	remotes, err := gitrepo.LoadRemotes(a.Remotes, a.RemotesFile)
	if err != nil {
		return nil, &usageError{err}
	}
	snap, err := gitrepo.Backup(ctx, r, gitrepo.BackupOptions{
		Asset: a.Name, Remotes: remotes, MirrorDir: gitMirrorDir(p, a), Workers: o.workers, LockWait: o.lockWait, Log: g.log,
	})
	if err != nil {
		return nil, err
	}
	if info, err := gitrepo.ParseInfo(snap); err == nil && !o.json {
		refs := 0
		names := make([]string, len(info.Repositories))
		for i, ri := range info.Repositories {
			refs += len(ri.Refs)
			names[i] = ri.Name
		}
		fmt.Fprintf(g.stdout, "git: %s, %s: %s\n", repositories(len(names)), plural(refs, "ref"), strings.Join(names, ", "))
	}
	return snap, nil
}

// restoreGit writes each repository of a snapshot as a bare repository
// under --to, checked by git fsck and against the recorded refs.
func restoreGit(ctx context.Context, g *globalOptions, a *policy.Asset, r *repo.Repository, s *repo.Snapshot, o restoreOptions) error {
	if o.to == "" {
		return usagef("needs --to DIR (each repository is restored as DIR/NAME.git)")
	}
	if err := o.refuseFlags(lifeboat.KindGit, "--to, --path NAME.git, --snapshot, --owner, --repository", "--path"); err != nil {
		return err
	}
	// Restored repositories belong to whoever restores them, unless
	// --owner says otherwise: the mirror's owner on the backup host means
	// nothing here.
	uid, gid := os.Geteuid(), os.Getegid()
	if o.owner != "" {
		u, err := user.Lookup(o.owner)
		if err != nil {
			return usagef("--owner: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	start := time.Now()
	done, err := gitrepo.Restore(ctx, r, s, gitrepo.RestoreOptions{Dir: o.to, Only: o.path, UID: uid, GID: gid, Workers: o.workers, Log: g.log})
	for _, d := range done {
		fmt.Fprintf(g.stdout, "restored %s.git to %s: %d refs as recorded, HEAD %s, git fsck clean\n", d.Name, d.Dir, d.Refs, d.Head)
	}
	if errors.Is(err, gitrepo.ErrUnknownRepository) {
		return usagef("--path: %v", err)
	}
	if errors.Is(err, gitrepo.ErrTargetExists) {
		return &usageError{err}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "restored snapshot %s of %s (taken %s): %s in %s\n", s.ID.Short(), a.Name,
		s.EndTime.Local().Format("2006-01-02 15:04:05 MST"), repositories(len(done)), time.Since(start).Round(time.Millisecond))
	return nil
}

func repositories(n int) string {
	if n == 1 {
		return "1 repository"
	}
	return fmt.Sprintf("%d repositories", n)
}
