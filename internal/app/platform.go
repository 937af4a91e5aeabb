package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// PlatformRequest asks for one platform exercise. Unset fields take the
// policy's platform_drill values.
type PlatformRequest struct {
	Group string
	// Repository is the repository every asset is drilled from ("": the
	// policy's platform_drill.repository, else each asset's drill
	// repository).
	Repository string
	// FreshHost rehearses a new host in another region: the service opens
	// no repository but Repository (which it then needs) and reads no
	// local state; only the exercise's results are written to state_dir.
	FreshHost bool
	// Parallel is how many drills run at once; 0: the policy's, else
	// the machine's cores.
	Parallel int
	// WholeTiers makes each tier wait for the whole drills of the tier
	// before (checks included), not only for their data to be restored.
	WholeTiers bool
	Trigger    string
	RunAs      string
	WorkDir    string
	// SelfCommand is how a restored asset calls this lifeboat back (each
	// drill's restore_command).
	SelfCommand func(args ...string) (string, error)
	// Progress, when set, is told of each member drill as it ends (the
	// CLI prints a line); it is called from the drills' goroutines, one
	// at a time.
	Progress func(*evidence.DrillReport, error)
}

// PlatformDrill drills every asset of the policy (or of a group) from one
// repository in tier order: the assets of the tier with the tightest RTO
// first, up to Parallel at once, then the next tier once every drill of
// this one has restored its data (platformTiers). Each drill is exactly a
// single drill (Drill): its own throwaway target, checks and report. A failed drill fails the
// exercise and is named, and the others go on. The exercise's report
// (the member drills by ID, each tier's time until it was back) is
// recorded in the catalog and in the repositories drilled from; it is
// returned whenever the exercise ran.
func (s *Service) PlatformDrill(ctx context.Context, req PlatformRequest) (out *evidence.PlatformReport, err error) {
	if pd := s.Policy.PlatformDrill; pd != nil {
		req.Group = cmp.Or(req.Group, pd.Group)
		req.Repository = cmp.Or(req.Repository, pd.Repository)
		req.FreshHost = req.FreshHost || pd.FreshHost
		req.WholeTiers = req.WholeTiers || pd.WholeTiers
		if req.Parallel == 0 {
			req.Parallel = pd.Parallel
		}
	}
	if req.Parallel <= 0 {
		req.Parallel = max(1, runtime.NumCPU())
	}
	if req.Trigger == "" {
		req.Trigger = "manual"
	}
	defer s.audited(ctx, audit.TypeDrill, "", req.Repository)(&err, func(e *audit.Event) []*audit.Event {
		if out != nil {
			e.Details = map[string]string{"platform": out.ID, "passed": strconv.FormatBool(out.Passed), "group": out.Group}
		}
		return nil
	})
	members, err := s.Policy.GroupAssets(req.Group)
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	if len(members) == 0 {
		return nil, asset.Usagef("group %s names no asset of the policy", req.Group)
	}
	if req.FreshHost {
		if req.Repository == "" {
			return nil, asset.Usagef("--fresh-host needs --repository (or platform_drill.repository): the one repository a new host restores from")
		}
		if _, err := s.Policy.Repository(req.Repository); err != nil {
			return nil, &asset.UsageError{Err: err}
		}
		s.confine(req.Repository)
		defer s.confine("")
	} else if req.Repository != "" {
		if _, err := s.Policy.Repository(req.Repository); err != nil {
			return nil, &asset.UsageError{Err: err}
		}
	}

	rep := &evidence.PlatformReport{Version: evidence.PlatformVersion, ID: newPlatformID(s.Now()), Group: req.Group,
		Repository: req.Repository, FreshHost: req.FreshHost, Trigger: req.Trigger, Parallel: req.Parallel, WholeTiers: req.WholeTiers,
		Started: s.Now().UTC(), Failed: []string{}}
	rep.Host, _ = os.Hostname()

	// Tiers in recovery order, each with its assets in the policy's order.
	byTier := map[string][]*policy.Asset{}
	var tiers []string
	for _, a := range members {
		if _, seen := byTier[a.Tier]; !seen {
			tiers = append(tiers, a.Tier)
		}
		byTier[a.Tier] = append(byTier[a.Tier], a)
	}
	tiers = s.Policy.TierOrder(tiers)
	results := s.platformTiers(ctx, tiers, byTier, req)
	for i, tier := range tiers {
		rep.Members = append(rep.Members, results.members[i]...)
		rep.Tiers = append(rep.Tiers, s.tierResult(tier, rep.Started, results.members[i]))
	}
	s.finishPlatform(ctx, rep)

	// Kept even when the exercise failed, on a context of its own so that
	// a stopped exercise still leaves its report (as Drill does).
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(results.repos)) {
		rp, perr := s.Policy.Repository(name)
		if perr != nil {
			continue
		}
		r, rerr := s.Repository(rctx, rp)
		if rerr == nil {
			rerr = evidence.StorePlatform(rctx, r, rep)
		}
		if rerr != nil {
			errs = append(errs, rerr)
		}
	}
	if cerr := s.recordPlatform(rctx, rep); cerr != nil {
		errs = append(errs, cerr)
	}
	switch {
	case rep.Aborted:
		errs = append([]error{fmt.Errorf("platform exercise %s was stopped before it finished: %w", rep.ID, context.Cause(ctx))}, errs...)
	case !rep.Passed:
		errs = append([]error{fmt.Errorf("platform exercise %s failed: %s", rep.ID, rep.Error)}, errs...)
	}
	return rep, errors.Join(errs...)
}

// tierRuns is what the drills of an exercise left: the members of each
// tier, and the repositories drilled from.
type tierRuns struct {
	members [][]evidence.Member
	repos   map[string]bool
}

// platformTiers drills the assets tier after tier, at most req.Parallel
// drills at once, and returns when every drill has ended. A tier starts
// once every drill of the tier before has restored its data (its write
// phase ended, or the drill ended without getting there): restores go in
// tier order, and one tier's WAL replay, start and checks overlap the next
// tier's restores. With req.WholeTiers a tier waits for the whole drills.
func (s *Service) platformTiers(ctx context.Context, tiers []string, byTier map[string][]*policy.Asset, req PlatformRequest) tierRuns {
	// Restore workers are shared out among the drills at once, so that N
	// drills do not each start a worker per core.
	workers := max(1, runtime.NumCPU()/req.Parallel)
	slots := make(chan struct{}, req.Parallel)
	out := tierRuns{members: make([][]evidence.Member, len(tiers)), repos: map[string]bool{}}
	var mu sync.Mutex // out.repos, Restored, Progress
	var all sync.WaitGroup
	for t, tier := range tiers {
		assets := byTier[tier]
		out.members[t] = make([]evidence.Member, len(assets))
		var gates []chan struct{}
		for i, a := range assets {
			m := &out.members[t][i]
			*m = evidence.Member{Asset: a.Name, Kind: string(a.Kind), Tier: a.Tier}
			if ctx.Err() != nil {
				m.Error = "not started: the exercise was stopped"
				continue
			}
			gate := make(chan struct{})
			gates = append(gates, gate)
			var once sync.Once
			open := func() { once.Do(func() { close(gate) }) }
			// Slots are taken here, in the policy's order: the drills of a
			// tier start in that order, and before any of the next tier.
			slots <- struct{}{}
			all.Add(1)
			go func() {
				defer all.Done()
				defer open()
				defer func() { <-slots }()
				m.Started = s.Now().UTC()
				name, dr, derr := s.platformMember(ctx, a, req, workers, func(phase string, at time.Time) {
					if phase != evidence.PhaseWrite {
						return
					}
					mu.Lock()
					m.Restored = at.UTC()
					mu.Unlock()
					if !req.WholeTiers {
						open()
					}
				})
				mu.Lock()
				defer mu.Unlock()
				m.Ended = s.Now().UTC()
				if dr != nil {
					m.Drill, m.Started, m.Ended = dr.ID, dr.Started, dr.Ended
					m.RTOSeconds, m.RPOSeconds, m.Passed = dr.RTOSeconds, dr.RPOSeconds, dr.Passed && derr == nil
				}
				if derr != nil {
					m.Passed, m.Error = false, oneLine(derr)
				}
				if name != "" {
					out.repos[name] = true
				}
				if req.Progress != nil {
					req.Progress(dr, derr)
				}
			}()
		}
		for _, g := range gates {
			<-g
		}
	}
	all.Wait()
	return out
}

// platformMember drills one asset of an exercise and returns the
// repository it drilled from.
func (s *Service) platformMember(ctx context.Context, a *policy.Asset, req PlatformRequest, workers int, onPhase func(string, time.Time)) (string, *evidence.DrillReport, error) {
	name := req.Repository
	if name == "" {
		name = a.Repositories[0]
		if a.Drill != nil && a.Drill.Repository != "" {
			name = a.Drill.Repository
		}
	} else if !slices.Contains(a.Repositories, name) {
		// A finding, not a usage error: this asset would not come back
		// if everything but that repository were lost.
		return "", nil, fmt.Errorf("asset %s is not kept in repository %s (it uses %s): it cannot be restored from there", a.Name, name, strings.Join(a.Repositories, ", "))
	}
	dr, err := s.Drill(ctx, DrillRequest{Asset: a.Name, Repository: name, Trigger: req.Trigger, RunAs: req.RunAs,
		WorkDir: req.WorkDir, Workers: workers, SelfCommand: req.SelfCommand, OnPhase: onPhase})
	return name, dr, err
}

// tierResult is how a tier of the exercise went: the time from the start
// until its last asset was back, against its RTO.
func (s *Service) tierResult(tier string, start time.Time, ms []evidence.Member) evidence.TierResult {
	tr := evidence.TierResult{Tier: tier, Passed: true}
	for _, m := range ms {
		tr.Assets = append(tr.Assets, m.Asset)
		if !m.Started.IsZero() && (tr.Started.IsZero() || m.Started.Before(tr.Started)) {
			tr.Started = m.Started
		}
		if m.Ended.After(tr.Ended) {
			tr.Ended = m.Ended
		}
		tr.Passed = tr.Passed && m.Passed
	}
	if !tr.Ended.IsZero() {
		tr.RTOSeconds = round3(tr.Ended.Sub(start).Seconds())
	}
	if t, ok := s.Policy.Tiers[tier]; ok {
		tr.RTOTargetSeconds = time.Duration(t.RTO).Seconds()
		if tr.Passed {
			met := tr.RTOSeconds <= tr.RTOTargetSeconds
			tr.RTOMet = &met
			tr.Passed = met
		}
	}
	return tr
}

// finishPlatform fills in the platform's totals and verdict.
func (s *Service) finishPlatform(ctx context.Context, rep *evidence.PlatformReport) {
	rep.Ended = s.Now().UTC()
	var last time.Time
	for _, m := range rep.Members {
		if m.Ended.After(last) {
			last = m.Ended
		}
		rep.RPOSeconds = max(rep.RPOSeconds, m.RPOSeconds)
		if !m.Passed {
			rep.Failed = append(rep.Failed, m.Asset)
			rep.Issues = append(rep.Issues, fmt.Sprintf("%s: %s", m.Asset, cmp.Or(m.Error, "failed")))
		}
	}
	if !last.IsZero() {
		rep.RTOSeconds = round3(last.Sub(rep.Started).Seconds())
	}
	for _, t := range rep.Tiers {
		if t.RTOMet != nil && !*t.RTOMet {
			rep.Issues = append(rep.Issues, fmt.Sprintf("tier %s back after %s, beyond its RTO %s", t.Tier,
				time.Duration(t.RTOSeconds*float64(time.Second)).Round(time.Second), time.Duration(t.RTOTargetSeconds*float64(time.Second))))
		}
	}
	rep.Aborted = ctx.Err() != nil && len(rep.Issues) > 0
	rep.Passed = len(rep.Issues) == 0
	switch {
	case len(rep.Failed) > 0:
		rep.Error = fmt.Sprintf("%d of %d assets failed: %s", len(rep.Failed), len(rep.Members), strings.Join(rep.Failed, ", "))
	case !rep.Passed:
		rep.Error = rep.Issues[0] // a tier back too late
	}
}

func (s *Service) recordPlatform(ctx context.Context, rep *evidence.PlatformReport) error {
	c, err := s.openCatalog(ctx)
	if err != nil {
		return fmt.Errorf("record platform exercise %s: %w", rep.ID, err)
	}
	defer c.Close()
	return c.RecordPlatformDrill(ctx, rep)
}

// confine makes the service open no repository but name ("": any again),
// for an exercise that rehearses a host with nothing else.
func (s *Service) confine(name string) {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	s.confined = name
}

// confinedOut is the error for a repository a confined service does not
// open; nil when rp may be opened. The caller holds s.pool.mu.
func (s *Service) confinedOut(rp *policy.Repository) error {
	if s.confined == "" || rp.Name == s.confined {
		return nil
	}
	return fmt.Errorf("repository %s: not opened: this exercise rehearses a fresh host that has only repository %s", rp.Name, s.confined)
}

// mayOpen reports whether a confined service may open rp.
func (s *Service) mayOpen(rp *policy.Repository) bool {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return s.confinedOut(rp) == nil
}

// newPlatformID names an exercise as drills are named, with a P so the
// two are told apart at a glance.
func newPlatformID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return "P" + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// storedPlatform reads the platform exercises a repository holds (the
// report filters them by period).
func (s *Service) storedPlatform(ctx context.Context, name string) ([]*evidence.PlatformReport, error) {
	_, r, err := s.RepositoryNamed(ctx, name)
	if err != nil {
		return nil, err
	}
	return evidence.StoredPlatform(ctx, r)
}
