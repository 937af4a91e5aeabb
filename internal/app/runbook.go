package app

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/report"
)

// RunbookRoot is where the runbook's restores go unless told otherwise: a
// scratch place, so that a line copied at 3 a.m. never overwrites the
// production copy it is meant to replace.
const RunbookRoot = "/var/tmp/lifeboat-restore"

// snapshotsToTime bounds the snapshots a runbook lists as earlier points
// of a kind without point-in-time recovery.
const snapshotsToTime = 5

// RestorePlan is how to restore one asset: the kind's steps around the
// restore, and the restore command lines themselves, the same for every
// kind (the dashboard shows them too).
type RestorePlan struct {
	Setup  []asset.RunbookLine `json:"setup,omitempty"`
	Latest []asset.RunbookLine `json:"latest"`
	ToTime []asset.RunbookLine `json:"to_time"`
	After  []asset.RunbookLine `json:"after,omitempty"`
	Checks []asset.RunbookLine `json:"checks,omitempty"`
}

// RestoreCommands is how to restore the asset info describes into the
// scratch directory root: to its newest point from the primary and from
// each copy; to an earlier point (a time inside a PITR window, or one of
// the newest snapshots); and the kind's steps before and after
// (asset.Runbooker).
func (s *Service) RestoreCommands(info AssetInfo, root string) RestorePlan {
	base := "lifeboat"
	if src := s.Policy.Source; src != "" {
		// Absolute: the lines are run from wherever the engineer is.
		if abs, err := filepath.Abs(src); err == nil {
			src = abs
		}
		base += " -c " + asset.ShellQuote(src)
	}
	var steps asset.RunbookSteps
	if a, k, err := s.Asset(info.Asset); err == nil {
		if rb, ok := k.(asset.Runbooker); ok {
			steps = rb.RunbookSteps(a, root)
		}
	}
	if steps.Target == "" {
		steps.Target = "--to " + asset.ShellQuote(filepath.Join(root, info.Asset))
	}
	restore := base + " restore " + asset.ShellQuote(info.Asset) + " " + steps.Target
	plan := RestorePlan{Setup: steps.Setup, After: steps.After, Checks: steps.Checks}
	for i, ri := range info.Repositories {
		from, name := "", ri.Status.Repository
		if i > 0 {
			from = " --repository " + asset.ShellQuote(name)
		}
		what := "the newest point, from " + name + " (the primary repository)"
		if i > 0 {
			what = "the newest point, from " + name + " (a copy: when the primary is lost)"
		}
		plan.Latest = append(plan.Latest, asset.RunbookLine{What: what, Line: restore + from})
		for _, w := range ri.Windows {
			if w.LatestTime.IsZero() || w.EarliestTime.IsZero() {
				continue
			}
			// A second before the newest commit: recovery stops at the
			// first commit after the target and fails when none follows.
			t := w.LatestTime
			if before := t.Add(-time.Second); before.After(w.EarliestTime) {
				t = before
			}
			at := t.UTC().Format(time.RFC3339)
			plan.ToTime = append(plan.ToTime, asset.RunbookLine{
				What: fmt.Sprintf("a time between %s and %s (timeline %d, in %s): replace the time", lifeboat.FormatTime(w.EarliestTime), lifeboat.FormatTime(w.LatestTime), w.Timeline, name),
				Line: fmt.Sprintf("%s%s --time %s", restore, from, at)})
		}
		if len(ri.Windows) > 0 {
			continue
		}
		n := len(ri.Snapshots)
		for j := n - 1; j >= 0 && j >= n-snapshotsToTime; j-- {
			snap := ri.Snapshots[j]
			plan.ToTime = append(plan.ToTime, asset.RunbookLine{
				What: fmt.Sprintf("as of %s (snapshot %s in %s; lifeboat snapshots %s lists the others)", lifeboat.FormatTime(snap.StopTime), snap.ID[:8], name, asset.ShellQuote(info.Asset)),
				Line: fmt.Sprintf("%s%s --snapshot %s", restore, from, snap.ID[:8])})
		}
	}
	return plan
}

// RunbookInput gathers what the runbook shows (report.RenderRunbook): the
// report's input over all recorded drills, and for every asset of the
// policy what its repositories hold and the plan to restore it under
// root ("" for RunbookRoot).
func (s *Service) RunbookInput(ctx context.Context, now time.Time, root string) (report.Input, error) {
	in, err := s.ReportInput(ctx, time.Time{}, now, "")
	if err != nil {
		return in, err
	}
	in.Runbook, err = s.RunbookAssets(ctx, now, root)
	return in, err
}

// RunbookAssets is, for every asset of the policy, what its repositories
// hold and the plan to restore it under root ("" for RunbookRoot): the
// part of the runbook only the service can read (the DR report adds it
// to its own input).
func (s *Service) RunbookAssets(ctx context.Context, now time.Time, root string) ([]report.RunbookAsset, error) {
	if root == "" {
		root = RunbookRoot
	}
	var assets []*policy.Asset
	for i := range s.Policy.Assets {
		assets = append(assets, &s.Policy.Assets[i])
	}
	infos, err := s.Info(ctx, assets, now)
	if err != nil {
		return nil, err
	}
	out := []report.RunbookAsset{}
	for _, info := range infos {
		out = append(out, s.runbookAsset(info, root))
	}
	return out, nil
}

func (s *Service) runbookAsset(info AssetInfo, root string) report.RunbookAsset {
	ra := report.RunbookAsset{Name: info.Asset, Kind: info.Kind}
	for _, ri := range info.Repositories {
		rr := report.RunbookRepository{Name: ri.Status.Repository, Role: ri.Status.Role, Snapshots: ri.Status.Snapshots,
			Newest: ri.Status.LastSnapshotTime, Pinned: len(ri.Pins), Error: ri.Status.Error}
		if rp, err := s.Policy.Repository(rr.Name); err == nil {
			rr.Location = location(rp.URL)
		}
		for _, w := range ri.Windows {
			if !w.EarliestTime.IsZero() && !w.LatestTime.IsZero() {
				rr.Restorable = fmt.Sprintf("%s to %s", lifeboat.FormatTime(w.EarliestTime), lifeboat.FormatTime(w.LatestTime))
			}
		}
		ra.Repositories = append(ra.Repositories, rr)
		for _, p := range ri.Pins {
			ra.Holds = append(ra.Holds, report.Hold{Snapshot: p.Snapshot, Repository: rr.Name, Reason: p.Reason, By: p.By, Created: p.Created})
		}
	}
	plan := s.RestoreCommands(info, root)
	ra.Setup, ra.Latest, ra.ToTime, ra.After, ra.Checks = commands(plan.Setup), commands(plan.Latest), commands(plan.ToTime), commands(plan.After), commands(plan.Checks)
	return ra
}

func commands(lines []asset.RunbookLine) []report.Command {
	out := make([]report.Command, 0, len(lines))
	for _, l := range lines {
		out = append(out, report.Command{What: l.What, Line: l.Line})
	}
	return out
}

// location is a repository's URL as the runbook shows it: without
// credentials, should a URL ever carry some.
func location(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

// WriteRunbook writes the runbook to the policy's runbook path (serve does
// after every drill and policy reload), atomically: a reader sees the
// previous runbook or the whole new one. It does nothing when the policy
// names no path.
func (s *Service) WriteRunbook(ctx context.Context, now time.Time) error {
	rb := s.Policy.Runbook
	if rb.Path == "" {
		return nil
	}
	in, err := s.RunbookInput(ctx, now, "")
	if err != nil {
		return fmt.Errorf("runbook: %w", err)
	}
	var buf bytes.Buffer
	if err := report.RenderRunbook(&buf, rb.Format, in); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(rb.Path), 0o750); err != nil {
		return fmt.Errorf("runbook: %w", err)
	}
	if err := durable.Replace(rb.Path, buf.Bytes(), 0o640); err != nil {
		return fmt.Errorf("runbook %s: %w", rb.Path, err)
	}
	return nil
}
