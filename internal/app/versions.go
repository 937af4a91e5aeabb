package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/asof"
)

// Repaired is what verify --repair did in one repository.
type Repaired struct {
	Repository string
	// Repaired are the objects whose authentic version was made current
	// again; Left those that have none (each a problem verify reports).
	Repaired []repo.Repaired
	Left     []repo.Overwritten
}

// RepairVersions makes the authentic earlier version of every object
// overwritten in place in the repository its current version again
// (repo.RepairVersions). It needs a credential that may read versions and
// put over a name: the expire role of docs/storage.md.
func (s *Service) RepairVersions(ctx context.Context, rp *policy.Repository) (*Repaired, error) {
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return nil, err
	}
	done, rep, err := r.RepairVersions(ctx)
	out := &Repaired{Repository: rp.Name, Repaired: done}
	if rep != nil {
		out.Left = rep.Overwritten
	}
	if err != nil {
		if errors.Is(err, storage.ErrPermission) {
			err = fmt.Errorf("%w (a repair needs a credential that may read versions and put over an existing name, such as the expire role of docs/storage.md)", err)
		}
		return out, fmt.Errorf("repair %s: %w", rp.Name, err)
	}
	return out, nil
}

// repositoryAsOf opens the asset's repository called name ("" for the
// primary) as it was at t, outside the pool: the caller closes it. A
// store without versions is refused in one line.
func (s *Service) repositoryAsOf(ctx context.Context, a *policy.Asset, name string, t time.Time) (*repo.Repository, error) {
	rp, err := s.assetRepositoryPolicy(a, name)
	if err != nil {
		return nil, err
	}
	be, err := OpenBackend(ctx, rp)
	if err != nil {
		return nil, err
	}
	view, err := asof.New(ctx, be, t)
	if err != nil {
		be.Close()
		if errors.Is(err, asof.ErrNoVersions) {
			return nil, asset.Usagef("repository %s: --repository-as-of: %v", rp.Name, err)
		}
		return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	sec, err := SecretFor(rp)
	if err != nil {
		view.Close()
		return nil, err
	}
	r, err := repo.Open(ctx, view, sec, s.Log)
	if err != nil {
		view.Close()
		return nil, fmt.Errorf("repository %s as of %s: %w", rp.Name, t.UTC().Format(time.RFC3339), err)
	}
	r.SetIdentities(IdentitiesFor(rp))
	return r, nil
}

// overwrittenLines are what a restore says of the objects it read from an
// earlier version.
func overwrittenLines(r *repo.Repository, mark uint64) []string {
	var out []string
	for _, o := range r.OverwrittenSince(mark) {
		out = append(out, fmt.Sprintf("warning: %s in %s: its current version is not authentic; restored from its earlier version %s, stored %s (run lifeboat verify --repair)",
			o.Name, r.Location(), o.Version, lifeboat.FormatTime(o.Stored)))
	}
	return out
}

// versioningProblem says what is wrong with the versioning of a
// repository's store, "" when nothing is or the store has none to set (a
// directory). Without versioning, an object a put-only credential
// overwrites is gone for good.
func versioningProblem(ctx context.Context, r *repo.Repository) string {
	v, ok := storage.Capability[storage.Versioned](r.Backend())
	if !ok {
		return ""
	}
	st, err := v.Versioning(ctx)
	switch {
	case err != nil:
		return "cannot read the bucket's versioning (the credential needs s3:GetBucketVersioning): " + err.Error()
	case st != storage.VersioningEnabled:
		return fmt.Sprintf("versioning is %s on the bucket of %s: an object overwritten by a credential that may put (a compromised backup host) cannot be brought back; turn it on (docs/storage.md)", st, r.Location())
	}
	return ""
}

// versioningProbe is doctor's line on the versioning of a repository's
// bucket; none for a store without versions (a directory) or a
// repository that did not open.
func versioningProbe(ctx context.Context, r *repo.Repository, repository string) (asset.Probe, bool) {
	if r == nil {
		return asset.Probe{}, false
	}
	if _, ok := storage.Capability[storage.Versioned](r.Backend()); !ok {
		return asset.Probe{}, false
	}
	pr := asset.Probe{Repository: repository, Name: "versioning"}
	if problem := versioningProblem(ctx, r); problem != "" {
		pr.Status, pr.Message = asset.ProbeWarn, problem
		pr.Fix = "turn versioning on for the bucket (aws s3api put-bucket-versioning --versioning-configuration Status=Enabled, mc version enable); see docs/storage.md"
		return pr, true
	}
	pr.Status, pr.Message = asset.ProbeOK, "the bucket keeps earlier versions: an object overwritten in place comes back"
	return pr, true
}
