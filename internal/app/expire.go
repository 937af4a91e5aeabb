package app

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/expire"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/retention"
)

// ExpireOptions shape one expire run of a repository; Assets are filled
// in from the policy.
type ExpireOptions = expire.Options

// Expire applies the retention of every asset that uses the repository
// rp: snapshots no rule keeps are deleted, then the WAL they alone
// needed, then the data nothing references (after the grace period).
func (s *Service) Expire(ctx context.Context, rp *policy.Repository, o ExpireOptions) (out *expire.Report, err error) {
	defer s.audited(ctx, audit.TypeExpire, "", rp.Name)(&err, s.expireIDs(ctx, &out, rp, &o))
	o.Assets = nil
	if o.Log == nil {
		o.Log = s.Log
	}
	for i := range s.Policy.Assets {
		a := &s.Policy.Assets[i]
		if !a.UsesRepository(rp.Name) {
			continue
		}
		rules, err := Rules(a, rp)
		if err != nil {
			return nil, err
		}
		_, k, err := s.Asset(a.Name)
		if err != nil {
			return nil, err
		}
		o.Assets = append(o.Assets, expire.Asset{Name: a.Name, Kind: k, Rules: rules})
	}
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return nil, err
	}
	if err := s.authorizeExpire(ctx, rp, r, o); err != nil {
		return nil, err
	}
	rep, err := expire.Run(ctx, r, o)
	if err == nil && !o.DryRun {
		err = s.recordRules(ctx, rp, r)
	}
	return rep, err
}

// Rules are the retention rules of an asset in the repository rp (whose
// floor holds for every asset in it).
func Rules(a *policy.Asset, rp *policy.Repository) (retention.Rules, error) {
	rules := retention.Rules{
		PITRWindow: a.Retention.PITRWindow.Std(), KeepWithin: a.Retention.KeepWithin.Std(),
		Floor: rp.MinRetention.Std(), Daily: a.Retention.Daily, Weekly: a.Retention.Weekly,
		Monthly: a.Retention.Monthly, Yearly: a.Retention.Yearly, Location: time.UTC,
	}
	if a.Retention.TimeZone != "" {
		loc, err := time.LoadLocation(a.Retention.TimeZone)
		if err != nil {
			return rules, asset.Usagef("asset %s: time zone %q: %v", a.Name, a.Retention.TimeZone, err)
		}
		rules.Location = loc
	}
	return rules, nil
}

// Forget deletes one snapshot's manifest from the repository named
// (its data goes at the next sweep); a pinned snapshot is refused.
func (s *Service) Forget(ctx context.Context, repository, id string) (_ *policy.Repository, forgotten *repo.Snapshot, err error) {
	defer s.audited(ctx, audit.TypeForget, "", repository)(&err, forgetIDs(&forgotten))
	rp, r, err := s.RepositoryNamed(ctx, repository)
	if err != nil {
		return nil, nil, err
	}
	snap, err := r.FindSnapshot(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	pins, err := r.Pins(ctx)
	if err != nil {
		return nil, nil, err
	}
	if p := pins[snap.ID]; p != nil {
		return nil, nil, asset.Usagef("snapshot %s is pinned in %s (%s): unpin it first", snap.ID.Short(), rp.Name, p.Reason)
	}
	if err := s.authorizeForget(ctx, rp, snap); err != nil {
		return nil, nil, err
	}
	if err := r.DeleteSnapshot(ctx, snap.ID); err != nil {
		return nil, nil, fmt.Errorf("forget snapshot %s in %s: %w", snap.ID.Short(), rp.Name, err)
	}
	return rp, snap, nil
}
