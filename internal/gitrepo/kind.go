package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// NewKind is the git kind: repositories mirrored from their remotes and
// stored whole (see docs/git.md).
func NewKind() asset.Kind { return kind{} }

type kind struct{}

func (kind) Name() lifeboat.AssetKind { return lifeboat.KindGit }

// Backup mirrors every remote of the asset and stores the mirrors as one
// snapshot (each a whole repository, so Full changes nothing). The
// mirrors are kept in the state directory between runs.
func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	a := b.Asset
	cfg, err := configOf(a)
	if err != nil {
		return nil, err
	}
	remotes, err := LoadRemotes(cfg.Remotes, cfg.RemotesFile)
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	snap, err := Backup(ctx, b.Repo, BackupOptions{
		Asset: a.Name, Remotes: remotes, MirrorDir: filepath.Join(b.StateDir, "git-mirrors", a.Name), Workers: b.Workers,
		LockWait: b.LockWait, Log: b.Log,
	})
	if err != nil {
		return nil, err
	}
	if info, err := ParseInfo(snap); err == nil {
		refs := 0
		names := make([]string, len(info.Repositories))
		for i, ri := range info.Repositories {
			refs += len(ri.Refs)
			names[i] = ri.Name
		}
		b.Summary = fmt.Sprintf("git: %s, %s: %s", repositories(len(names)), asset.Plural(refs, "ref"), strings.Join(names, ", "))
	}
	return snap, nil
}

func (kind) RestoreFlags() []asset.Flag {
	return []asset.Flag{{Name: "path", Usage: "only the repository NAME.git"}}
}

// Restore writes each repository of the snapshot as a bare repository
// under --to, checked by git fsck and against the recorded refs.
// Restored repositories belong to whoever restores them, unless --owner
// says otherwise: the mirror's owner on the backup host means nothing
// here.
func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	if r.To == "" {
		return nil, asset.Usagef("needs --to DIR (each repository is restored as DIR/NAME.git)")
	}
	uid, gid := r.UID, r.GID
	if uid < 0 {
		uid, gid = os.Geteuid(), os.Getegid()
	}
	s := r.Snapshot
	start := time.Now()
	done, err := Restore(ctx, r.Repo, s, RestoreOptions{Dir: r.To, Only: r.Flags.String("path"), UID: uid, GID: gid, Workers: r.Workers, Log: r.Log})
	out := &asset.Restored{Snapshot: s}
	for _, d := range done {
		out.Lines = append(out.Lines, fmt.Sprintf("restored %s.git to %s: %d refs as recorded, HEAD %s, git fsck clean", d.Name, d.Dir, d.Refs, d.Head))
	}
	switch {
	case errors.Is(err, ErrUnknownRepository):
		return out, asset.Usagef("--path: %v", err)
	case errors.Is(err, ErrTargetExists):
		return out, &asset.UsageError{Err: err}
	case err != nil:
		return out, err
	}
	out.Lines = append(out.Lines, fmt.Sprintf("restored snapshot %s of %s (taken %s): %s in %s", s.ID.Short(), r.Asset.Name,
		lifeboat.FormatTime(s.EndTime), repositories(len(done)), time.Since(start).Round(time.Millisecond)))
	return out, nil
}

// Drill restores every repository as a bare repository, which Restore
// checks with git fsck and ref by ref.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)
	start := time.Now()
	restored, err := Restore(ctx, d.Repo(), s, RestoreOptions{Dir: filepath.Join(d.WorkDir(), "git"),
		UID: os.Getuid(), GID: os.Getgid(), Workers: d.Workers(), Log: d.Log()})
	d.Phase(evidence.PhaseWrite)
	c := asset.IntegrityCheck{Name: "git fsck and every ref as recorded", Passed: err == nil, Seconds: time.Since(start).Seconds()}
	if err != nil {
		c.Detail = err.Error()
		d.Integrity(c)
		return err
	}
	refs := 0
	for _, r := range restored {
		refs += r.Refs
	}
	c.Got = fmt.Sprintf("%d repositories, %d refs", len(restored), refs)
	d.Integrity(c)
	d.Report().Bytes += s.Stats.BytesTotal
	return nil
}

func repositories(n int) string {
	if n == 1 {
		return "1 repository"
	}
	return fmt.Sprintf("%d repositories", n)
}
