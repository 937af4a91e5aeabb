package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/childenv"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// BackupRequest asks for one backup.
type BackupRequest struct {
	Asset    string
	Full     bool
	Workers  int
	LockWait time.Duration
	// ArchiveTimeout bounds the wait for the archive (PITR kinds).
	ArchiveTimeout time.Duration
	// CheckBlocks proves a WAL-derived incremental against a full read.
	CheckBlocks bool
	Progress    func(asset.Progress) // nil: none
	Warn        func(string)         // nil: logged
}

// BackupResult is a backup taken.
type BackupResult struct {
	Asset      *policy.Asset
	Snapshot   *repo.Snapshot
	Repo       *repo.Repository
	Repository *policy.Repository // the primary it was stored in
	// Copies are the asset's other repositories, which the caller brings
	// up to date.
	Copies []*policy.Repository
	// What the summary line calls the snapshot, and the kind's tail of
	// that line ("" for none).
	What, Summary string
	Start         time.Time
}

// Backup stores one snapshot of an asset in its primary repository.
func (s *Service) Backup(ctx context.Context, req BackupRequest) (out *BackupResult, err error) {
	defer s.audited(ctx, audit.TypeBackup, req.Asset, "")(&err, backupIDs(&out))
	a, k, err := s.Asset(req.Asset)
	if err != nil {
		return nil, err
	}
	res := &BackupResult{Asset: a, Start: s.Now()}
	rps, err := s.Policy.AssetRepositories(a)
	if err != nil {
		return res, &asset.UsageError{Err: err}
	}
	res.Repository, res.Copies = rps[0], rps[1:]
	r, err := s.Repository(ctx, rps[0])
	if err != nil {
		return res, err
	}
	res.Repo = r
	b := &asset.Backup{Asset: a, Repo: r, Full: req.Full, Workers: req.Workers, LockWait: req.LockWait,
		ArchiveTimeout: req.ArchiveTimeout, CheckBlocks: req.CheckBlocks, StateDir: s.Policy.StateDir, PolicyPath: s.Policy.Source, Log: s.Log, Progress: req.Progress, Warn: req.Warn}
	if b.Progress == nil {
		b.Progress = func(asset.Progress) {}
	}
	if b.Warn == nil {
		b.Warn = func(msg string) { s.Log.Warn(msg, "asset", a.Name) }
	}
	snap, err := k.Backup(ctx, b)
	if err != nil {
		return res, fmt.Errorf("backup %s: %w", a.Name, err)
	}
	res.Snapshot, res.What, res.Summary = snap, b.What, b.Summary
	if res.What == "" {
		res.What = string(a.Kind)
	}
	return res, nil
}

// RestoreRequest asks for one restore.
type RestoreRequest struct {
	Asset      string
	Repository string // "" for the primary
	Snapshot   string // an ID or a unique prefix; "" for the newest fitting one
	To         string
	Workers    int
	UID, GID   int
	Flags      asset.FlagValues
	Progress   func(asset.Progress)
	// SelfCommand is how a restored asset calls this lifeboat back.
	SelfCommand func(args ...string) (string, error)
	// AsOf, when set, reads the repository as it was then (a versioned
	// bucket's objects as of that time; versions.go).
	AsOf time.Time
	// Production says the restore replaces production (--production):
	// with restore_production protected, it needs approval (approval.go).
	Production bool
}

// Restore brings a snapshot of an asset back. Flags of other kinds are
// refused before anything is read.
func (s *Service) Restore(ctx context.Context, req RestoreRequest) (out *asset.Restored, err error) {
	defer s.audited(ctx, audit.TypeRestore, req.Asset, req.Repository)(&err, restoreIDs(&out, req))
	a, k, err := s.Asset(req.Asset)
	if err != nil {
		return nil, err
	}
	if err := asset.Refuse(k, req.Flags); err != nil {
		return nil, err
	}
	if err := s.authorizeRestore(ctx, a, k, req); err != nil {
		return nil, err
	}
	var r *repo.Repository
	if req.AsOf.IsZero() {
		r, _, err = s.AssetRepository(ctx, a, req.Repository)
	} else if r, err = s.repositoryAsOf(ctx, a, req.Repository, req.AsOf); err == nil {
		defer r.Close()
	}
	if err != nil {
		return nil, err
	}
	if err := r.CanReadContents(ctx); err != nil {
		return nil, fmt.Errorf("restore %s: %w", a.Name, err)
	}
	mark := r.UnauthenticMark()
	rr := &asset.Restore{Asset: a, Repo: r, Repository: req.Repository, SnapshotID: req.Snapshot, To: req.To, Workers: req.Workers,
		UID: req.UID, GID: req.GID, Flags: req.Flags, Log: s.Log, Progress: req.Progress, SelfCommand: req.SelfCommand,
		SelfEnv: childenv.Self(s.Policy.EnvRefs())}
	if rr.Progress == nil {
		rr.Progress = func(asset.Progress) {}
	}
	if _, pitr := k.(asset.PITR); !pitr {
		if rr.Snapshot, err = PickSnapshot(ctx, r, a.Name, req.Snapshot); err != nil {
			return nil, fmt.Errorf("restore %s: %w", a.Name, err)
		}
	}
	res, err := k.Restore(ctx, rr)
	if res != nil {
		res.Lines = append(res.Lines, overwrittenLines(r, mark)...)
	}
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", a.Name, err)
	}
	return res, nil
}

// PickSnapshot is the snapshot of the asset a restore starts from: the
// one named (an ID or a unique prefix), else the newest.
func PickSnapshot(ctx context.Context, r *repo.Repository, assetName, id string) (*repo.Snapshot, error) {
	if id != "" {
		s, err := r.FindSnapshot(ctx, id)
		if err != nil {
			return nil, err
		}
		if s.Asset != assetName {
			return nil, asset.Usagef("snapshot %s belongs to asset %s, not %s", s.ID.Short(), s.Asset, assetName)
		}
		return s, nil
	}
	snaps, err := r.Snapshots(ctx, assetName)
	if err != nil {
		return nil, err
	}
	if len(snaps) == 0 {
		return nil, fmt.Errorf("asset %s has no snapshot in this repository", assetName)
	}
	newest := snaps[0]
	for _, s := range snaps[1:] {
		if s.EndTime.After(newest.EndTime) {
			newest = s
		}
	}
	return newest, nil
}

// FindSnapshot finds the snapshot id (an ID or a unique prefix) in the
// policy's repository called name, or in the first of all of them that
// holds it; a nil snapshot when none does.
func (s *Service) FindSnapshot(ctx context.Context, name, id string) (*repo.Repository, *repo.Snapshot, error) {
	repos, err := NamedOrAllRepositories(s.Policy, name)
	if err != nil {
		return nil, nil, err
	}
	for _, rp := range repos {
		r, err := s.Repository(ctx, rp)
		if err != nil {
			return nil, nil, err
		}
		snap, err := r.FindSnapshot(ctx, id)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return r, snap, nil
	}
	return nil, nil, nil
}

// NamedOrAllRepositories is the policy's repository called name, or all
// of them when name is "".
func NamedOrAllRepositories(p *policy.Policy, name string) ([]*policy.Repository, error) {
	if name != "" {
		rp, err := p.Repository(name)
		if err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		return []*policy.Repository{rp}, nil
	}
	out := make([]*policy.Repository, len(p.Repositories))
	for i := range p.Repositories {
		out[i] = &p.Repositories[i]
	}
	return out, nil
}

// Diff compares two snapshots of one asset (a from and a to, IDs or
// prefixes), found in the repository called name or the first that holds
// from; with assetName, both must be that asset's.
func (s *Service) Diff(ctx context.Context, assetName, repository, fromID, toID string) (res asset.DiffResult, from, to *repo.Snapshot, err error) {
	if assetName != "" {
		if _, _, err := s.Asset(assetName); err != nil {
			return nil, nil, nil, err
		}
	}
	r, from, err := s.FindSnapshot(ctx, repository, fromID)
	if err != nil {
		return nil, nil, nil, err
	}
	if from == nil {
		return nil, nil, nil, fmt.Errorf("no repository of the policy holds snapshot %q", fromID)
	}
	if to, err = r.FindSnapshot(ctx, toID); err != nil {
		return nil, nil, nil, err
	}
	if assetName != "" && from.Asset != assetName {
		return nil, nil, nil, asset.Usagef("snapshot %s is of asset %s, not %s", from.ID.Short(), from.Asset, assetName)
	}
	if from.Asset != to.Asset {
		return nil, nil, nil, asset.Usagef("snapshot %s is of asset %s and %s of asset %s: diff compares two snapshots of one asset",
			from.ID.Short(), from.Asset, to.ID.Short(), to.Asset)
	}
	k, err := s.Kinds.Kind(lifeboatKind(from.Kind))
	if err != nil {
		return nil, nil, nil, err
	}
	d, ok := k.(asset.Differ)
	if !ok {
		return nil, nil, nil, asset.Usagef("snapshot %s is of asset %s (kind %s): diff compares snapshots of kinds %s",
			from.ID.Short(), from.Asset, from.Kind, s.kindsWith(func(k asset.Kind) bool { _, ok := k.(asset.Differ); return ok }))
	}
	if res, err = d.Diff(ctx, r, from, to); err != nil {
		return nil, nil, nil, fmt.Errorf("diff %s %s: %w", from.ID.Short(), to.ID.Short(), err)
	}
	return res, from, to, nil
}

// Export writes a snapshot out in its asset's native format and returns
// the summary line.
func (s *Service) Export(ctx context.Context, repository, id string, o asset.ExportOptions) (string, error) {
	r, snap, err := s.FindSnapshot(ctx, repository, id)
	if err != nil {
		return "", fmt.Errorf("export: %w", err)
	}
	if snap == nil {
		return "", asset.Usagef("export: no repository of the policy holds snapshot %q", id)
	}
	k, err := s.Kinds.Kind(lifeboatKind(snap.Kind))
	if err != nil {
		return "", err
	}
	e, ok := k.(asset.Exporter)
	if !ok {
		return "", asset.Usagef("export: snapshot %s is a %s snapshot of %s; export writes snapshots of kinds %s", snap.ID.Short(), snap.Kind, snap.Asset,
			s.kindsWith(func(k asset.Kind) bool { _, ok := k.(asset.Exporter); return ok }))
	}
	line, err := e.Export(ctx, r, snap, o)
	if err != nil {
		return "", fmt.Errorf("export %s: %w", snap.ID.Short(), err)
	}
	return line, nil
}
