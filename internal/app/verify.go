package app

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Verified is what verify found in one repository.
type Verified struct {
	Repository string
	Report     *repo.VerifyReport
	// WALFiles counts the archived files of the PITR assets checked.
	WALFiles int
	// Problems are every problem found, the repository's and the
	// archives'.
	Problems []string
	// NotRecorded says why the outcome is not in the catalog ("" when
	// it is): what verify found stands either way.
	NotRecorded error
}

// Verify checks one repository, and the archive of every PITR asset that
// uses it, and records the outcome in the catalog.
func (s *Service) Verify(ctx context.Context, rp *policy.Repository, readData bool) (out *Verified, err error) {
	defer s.audited(ctx, audit.TypeVerify, "", rp.Name)(&err, verifyIDs(&out))
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return nil, err
	}
	started := s.Now()
	rep, err := r.Verify(ctx, repo.VerifyOptions{ReadData: readData})
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", rp.Name, err)
	}
	v := &Verified{Repository: rp.Name, Report: rep}
	for _, pr := range rep.Problems {
		v.Problems = append(v.Problems, fmt.Sprint(pr))
	}
	mark := r.UnauthenticMark()
	for i := range s.Policy.Assets {
		a := &s.Policy.Assets[i]
		pitr, ok := s.pitr(a)
		if !ok || !a.UsesRepository(rp.Name) {
			continue
		}
		files, problems, err := pitr.VerifyArchive(ctx, r, a.Name, readData)
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", rp.Name, err)
		}
		v.Problems = append(v.Problems, problems...)
		v.WALFiles += files
	}
	// Objects the archives' checks met that are not authentic (a name a
	// squatter holds) are problems too.
	reported := map[string]bool{}
	for _, u := range rep.Unauthentic {
		reported[u.Name] = true
	}
	for _, u := range r.UnauthenticSince(mark) {
		if !reported[u.Name] {
			rep.Unauthentic = append(rep.Unauthentic, u)
			v.Problems = append(v.Problems, repo.UnauthenticProblem(u))
		}
	}
	v.NotRecorded = s.recordVerify(ctx, rp.Name, started, v.Problems, rep.Snapshots+rep.Packs+v.WALFiles)
	return v, nil
}

// recordVerify keeps the outcome in the catalog, where check and the
// report find it.
func (s *Service) recordVerify(ctx context.Context, repository string, started time.Time, found []string, objects int) error {
	c, err := s.openCatalog(ctx)
	if err != nil {
		return fmt.Errorf("record the verify of %s: %w", repository, err)
	}
	defer c.Close()
	v := catalog.Verify{Repository: repository, Start: started, End: s.Now(), OK: len(found) == 0, Objects: int64(objects)}
	if len(found) > 0 {
		v.Error = found[0]
		if len(found) > 1 {
			v.Error += fmt.Sprintf(" (and %d more)", len(found)-1)
		}
	}
	return c.RecordVerify(ctx, v)
}

// RestorePoint records a named restore point of a PITR asset.
func (s *Service) RestorePoint(ctx context.Context, assetName, name string) (*asset.RestorePoint, error) {
	a, pitr, r, err := s.restorePoints(ctx, assetName)
	if err != nil {
		return nil, err
	}
	rp, err := pitr.RestorePoint(ctx, r, a, name)
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", name, err)
	}
	return rp, nil
}

// RestorePoints lists the restore points recorded for an asset in its
// primary repository, oldest first.
func (s *Service) RestorePoints(ctx context.Context, assetName string) ([]asset.RestorePoint, error) {
	a, pitr, r, err := s.restorePoints(ctx, assetName)
	if err != nil {
		return nil, err
	}
	return pitr.RestorePoints(ctx, r, a.Name)
}

// restorePoints finds a PITR asset and its primary repository.
func (s *Service) restorePoints(ctx context.Context, assetName string) (*policy.Asset, asset.PITR, *repo.Repository, error) {
	a, k, err := s.Asset(assetName)
	if err != nil {
		return nil, nil, nil, err
	}
	pitr, ok := k.(asset.PITR)
	if !ok {
		return nil, nil, nil, asset.Usagef("asset %s: restore points exist for assets with point-in-time recovery (kinds %s), not %s",
			a.Name, s.kindsWith(func(k asset.Kind) bool { _, ok := k.(asset.PITR); return ok }), a.Kind)
	}
	r, _, err := s.AssetRepository(ctx, a, "")
	if err != nil {
		return nil, nil, nil, err
	}
	return a, pitr, r, nil
}
