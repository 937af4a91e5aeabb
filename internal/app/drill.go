package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/childenv"
	"github.com/lifeboat-dr/lifeboat/internal/drill"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// DrillRequest asks for one drill.
type DrillRequest struct {
	Asset string
	// Point is policy.DrillLatest, policy.DrillRandom, asset.PointTime
	// (with Time) or asset.PointSnapshot (with Snapshot); "" takes the
	// policy's, else the latest.
	Point    string
	Time     time.Time
	Snapshot string
	// Repository is the asset's repository to drill from; "" takes the
	// policy's, else the primary.
	Repository string
	Trigger    string
	RunAs      string
	WorkDir    string
	Workers    int
	// SelfCommand is how a restored asset calls this lifeboat back (the
	// drill's restore_command).
	SelfCommand func(args ...string) (string, error)
	// OnPhase, when set, is told of each phase of the drill as it ends.
	OnPhase func(name string, at time.Time)
}

// Drill carries out one drill and records its report in the repository
// it restored from and in the catalog. The report is returned whenever
// the drill ran, passed or not; the error says why it failed or could not
// be recorded.
func (s *Service) Drill(ctx context.Context, req DrillRequest) (out *evidence.DrillReport, err error) {
	defer s.audited(ctx, audit.TypeDrill, req.Asset, req.Repository)(&err, drillIDs(&out))
	a, k, err := s.Asset(req.Asset)
	if err != nil {
		return nil, err
	}
	point := req.Point
	if point == "" {
		point = policy.DrillLatest
		if a.Drill != nil && a.Drill.Point != "" {
			point = a.Drill.Point
		}
	}
	repoName := req.Repository
	var checks []policy.ValidationQuery
	if a.Drill != nil {
		checks = a.Drill.Checks
		if repoName == "" {
			repoName = a.Drill.Repository
		}
	}
	if repoName == "" {
		repoName = a.Repositories[0]
	}
	r, _, err := s.AssetRepository(ctx, a, repoName)
	if err != nil {
		return nil, err
	}
	if err := r.CanReadContents(ctx); err != nil {
		return nil, fmt.Errorf("drill %s: %w", a.Name, err)
	}
	fetch := func(until string) (string, error) {
		if req.SelfCommand == nil {
			return "", fmt.Errorf("drill %s: no way to call lifeboat back for WAL", a.Name)
		}
		args := []string{"wal-fetch", "--repository", repoName}
		if until != "" {
			args = append(args, "--until", until)
		}
		return req.SelfCommand(append(args, a.Name, "%f", "%p")...)
	}
	var tier *policy.Tier
	if t, ok := s.Policy.Tiers[a.Tier]; ok {
		tier = &t
	}
	rep, err := drill.Run(ctx, drill.Options{
		Kind: k, Asset: a, Tier: tier, Repo: r, Repository: repoName, Point: point, Time: req.Time, Snapshot: req.Snapshot,
		Checks: checks, Trigger: req.Trigger, RestoreCommand: fetch, RestoreEnv: childenv.Self(s.Policy.EnvRefs()), RunAs: req.RunAs, WorkDir: req.WorkDir,
		Workers: req.Workers, OnPhase: req.OnPhase, Log: s.Log, Now: s.Now,
	})
	if rep == nil {
		return nil, err
	}
	// The evidence is kept even when the drill failed: a failed drill is
	// exactly what an auditor must see. Recording it uses a context of its
	// own, so a drill stopped by a signal still leaves its report.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	if serr := evidence.Store(rctx, r, rep); serr != nil {
		errs = append(errs, serr)
	}
	if cerr := s.recordDrill(rctx, rep); cerr != nil {
		errs = append(errs, cerr)
	}
	if err != nil {
		errs = append([]error{err}, errs...)
	}
	return rep, errors.Join(errs...)
}

func (s *Service) recordDrill(ctx context.Context, rep *evidence.DrillReport) error {
	c, err := s.openCatalog(ctx)
	if err != nil {
		return fmt.Errorf("record drill %s: %w", rep.ID, err)
	}
	defer c.Close()
	return c.RecordDrill(ctx, rep)
}
