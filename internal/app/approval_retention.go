package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// A policy edit can shrink retention, and the next expire deletes what the
// old rules kept. So each expire that deletes records, in the repository,
// the rules it ran with (retention/<asset>/<20 digits>, sealed, written
// once); an expire whose rules keep less than the last recorded ones is
// the protected action retention_reduce.

const retentionArea = "retention"

// keptRules is an asset's retention in a repository as recorded: the
// policy's rules and the repository's floor.
type keptRules struct {
	PITRWindow   time.Duration `json:"pitr_window"`
	KeepWithin   time.Duration `json:"keep_within"`
	Daily        int           `json:"daily"`
	Weekly       int           `json:"weekly"`
	Monthly      int           `json:"monthly"`
	Yearly       int           `json:"yearly"`
	MinRetention time.Duration `json:"min_retention"`
	// Everything says the asset had no rule: expire kept all of it.
	Everything bool      `json:"everything"`
	Recorded   time.Time `json:"recorded"`
}

func rulesOf(a *policy.Asset, rp *policy.Repository) keptRules {
	r := a.Retention
	return keptRules{PITRWindow: r.PITRWindow.Std(), KeepWithin: r.KeepWithin.Std(), Daily: r.Daily, Weekly: r.Weekly,
		Monthly: r.Monthly, Yearly: r.Yearly, MinRetention: rp.MinRetention.Std(), Everything: r.IsZero()}
}

func (k keptRules) String() string {
	if k.Everything {
		return "everything"
	}
	var parts []string
	add := func(name string, v any, set bool) {
		if set {
			parts = append(parts, fmt.Sprintf("%s=%v", name, v))
		}
	}
	add("pitr_window", k.PITRWindow, k.PITRWindow > 0)
	add("keep_within", k.KeepWithin, k.KeepWithin > 0)
	add("daily", k.Daily, k.Daily > 0)
	add("weekly", k.Weekly, k.Weekly > 0)
	add("monthly", k.Monthly, k.Monthly > 0)
	add("yearly", k.Yearly, k.Yearly > 0)
	add("min_retention", k.MinRetention, k.MinRetention > 0)
	return strings.Join(parts, " ")
}

// keepsLess reports whether now keeps less than before in any rule: a
// window or count made smaller or removed, a floor lowered, or rules
// where there were none.
func (now keptRules) keepsLess(before keptRules) bool {
	if now.Everything {
		return false
	}
	if before.Everything {
		return true
	}
	return now.PITRWindow < before.PITRWindow || now.KeepWithin < before.KeepWithin || now.Daily < before.Daily ||
		now.Weekly < before.Weekly || now.Monthly < before.Monthly || now.Yearly < before.Yearly || now.MinRetention < before.MinRetention
}

func (k keptRules) same(o keptRules) bool {
	k.Recorded, o.Recorded = time.Time{}, time.Time{}
	return k == o
}

// lastRules is the newest authentic record of the asset's rules in r; ok
// false when there is none. Records that do not authenticate (planted
// without the key) are skipped.
func lastRules(ctx context.Context, r *repo.Repository, assetName string) (keptRules, bool, error) {
	var rels []string
	if err := r.ListNamed(ctx, retentionArea, assetName, "", func(rel string, _ int64) error {
		rels = append(rels, rel)
		return nil
	}); err != nil {
		return keptRules{}, false, fmt.Errorf("list the retention records of %s: %w", assetName, err)
	}
	slices.Reverse(rels)
	for _, rel := range rels {
		data, err := r.GetNamed(ctx, retentionArea, assetName, rel)
		if errors.Is(err, repo.ErrUnauthentic) || errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return keptRules{}, false, fmt.Errorf("read the retention record %s of %s: %w", rel, assetName, err)
		}
		var k keptRules
		if err := json.Unmarshal(data, &k); err != nil {
			return keptRules{}, false, fmt.Errorf("retention record %s of %s: %v: %w", rel, assetName, err, repo.ErrCorrupt)
		}
		return k, true, nil
	}
	return keptRules{}, false, nil
}

// retentionGate is the approval an expire of rp needs because an asset's
// rules keep less than the ones recorded by the last expire; found false
// when no asset's do (or retention_reduce is not protected).
func (s *Service) retentionGate(ctx context.Context, rp *policy.Repository, r *repo.Repository) (gate, bool, error) {
	if !s.Policy.Protects(policy.ActionRetentionReduce) {
		return gate{}, false, nil
	}
	var args []approval.Arg
	for i := range s.Policy.Assets {
		a := &s.Policy.Assets[i]
		if !a.UsesRepository(rp.Name) {
			continue
		}
		before, ok, err := lastRules(ctx, r, a.Name)
		if err != nil {
			return gate{}, false, err
		}
		if now := rulesOf(a, rp); ok && now.keepsLess(before) {
			args = append(args, approval.Arg{Name: "retention." + a.Name, Value: before.String() + " -> " + now.String()})
		}
	}
	if len(args) == 0 {
		return gate{}, false, nil
	}
	args = append(args, approval.Arg{Name: "repository", Value: rp.Name})
	return gate{action: policy.ActionRetentionReduce, args: args, home: rp}, true, nil
}

// recordRules stores the rules of every asset of rp whose rules differ
// from the last recorded ones, after an expire ran with them; only when
// the policy protects retention_reduce, which alone reads them.
func (s *Service) recordRules(ctx context.Context, rp *policy.Repository, r *repo.Repository) error {
	if !s.Policy.Protects(policy.ActionRetentionReduce) {
		return nil
	}
	for i := range s.Policy.Assets {
		a := &s.Policy.Assets[i]
		if !a.UsesRepository(rp.Name) {
			continue
		}
		before, ok, err := lastRules(ctx, r, a.Name)
		if err != nil {
			return err
		}
		now := rulesOf(a, rp)
		if ok && now.same(before) {
			continue
		}
		now.Recorded = s.Now().UTC()
		doc, err := json.Marshal(now)
		if err != nil {
			return err
		}
		if _, err := r.PutNamed(ctx, retentionArea, a.Name, fmt.Sprintf("%020d", now.Recorded.UnixNano()), doc, repo.CodecZstd); err != nil {
			return fmt.Errorf("record the retention of %s in %s: %w", a.Name, rp.Name, err)
		}
	}
	return nil
}
