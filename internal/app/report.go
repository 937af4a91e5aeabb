package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/report"
)

// ReportInput gathers what the DR report shows: the runs and drills the
// catalog holds since since (or the drill reports stored in the
// repository called fromRepository, when given), and each asset's
// newest size.
func (s *Service) ReportInput(ctx context.Context, since, now time.Time, fromRepository string) (report.Input, error) {
	// Each asset's newest size reads its repository's manifests: once per
	// repository, not once per asset.
	ctx = repo.WithListMemo(ctx)
	p := s.Policy
	in := report.Input{Policy: p, Since: since, Generated: now, Sizes: map[string]int64{}}
	in.Host, _ = os.Hostname()
	var runs []catalog.Run
	var drills []*evidence.DrillReport
	path := catalog.Path(p.StateDir)
	if _, err := os.Stat(path); err == nil {
		c, err := catalog.Open(ctx, path)
		if err != nil {
			return in, err
		}
		defer c.Close()
		if runs, err = c.Runs(ctx, catalog.Filter{}); err != nil {
			return in, err
		}
		if fromRepository == "" {
			if drills, err = c.Drills(ctx, catalog.DrillFilter{Since: since}); err != nil {
				return in, err
			}
			if in.Platform, err = c.PlatformDrills(ctx, since); err != nil {
				return in, err
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return in, fmt.Errorf("catalog: %w", err)
	}
	if s.FleetEnabled() {
		// Every host's runs and drills; another host's assets under
		// host/name, so that two hosts' assets of one name stay apart.
		var err error
		if runs, drills, err = s.fleetReportInput(ctx, since, fromRepository == "", drills); err != nil {
			return in, err
		}
		in.Host = s.Policy.Fleet.Host
	}
	for _, r := range runs {
		if r.Kind != "drill" {
			in.Runs = append(in.Runs, r)
		}
	}
	if fromRepository != "" {
		var err error
		if drills, err = s.storedDrills(ctx, fromRepository, since); err != nil {
			return in, err
		}
		if in.Platform, err = s.storedPlatform(ctx, fromRepository); err != nil {
			return in, err
		}
	}
	in.Drills = drills
	for i := range p.Assets {
		a := &p.Assets[i]
		r, _, err := s.AssetRepository(ctx, a, "")
		if err != nil {
			return in, err
		}
		if snap, err := PickSnapshot(ctx, r, a.Name, ""); err == nil {
			in.Sizes[a.Name] = snap.Stats.BytesTotal
		}
	}
	return in, nil
}

// storedDrills reads the drill reports a repository holds for every asset
// of the policy that uses it, newest first.
func (s *Service) storedDrills(ctx context.Context, name string, since time.Time) ([]*evidence.DrillReport, error) {
	_, r, err := s.RepositoryNamed(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []*evidence.DrillReport
	for _, a := range s.Policy.Assets {
		if !a.UsesRepository(name) {
			continue
		}
		ds, err := evidence.Stored(ctx, r, a.Name)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if since.IsZero() || !d.Started.Before(since) {
				out = append(out, d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out, nil
}

// Report renders the DR report in format (md, html or json): ReportInput
// with the runbook riding along (docs/runbook.md). A report is still worth
// having when a repository cannot be read for the runbook: it then goes
// without one, and the log says why.
func (s *Service) Report(ctx context.Context, format string, since, now time.Time, fromRepository string) ([]byte, error) {
	// The report's sizes and the runbook read the same manifests.
	ctx = repo.WithListMemo(ctx)
	in, err := s.ReportInput(ctx, since, now, fromRepository)
	if err != nil {
		return nil, err
	}
	if in.Runbook, err = s.RunbookAssets(ctx, now, ""); err != nil {
		s.Log.Warn("the report carries no runbook", "error", oneLine(err))
		in.Runbook = nil
	}
	var buf bytes.Buffer
	if err := report.Render(&buf, format, in); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteReport writes the DR report to the policy's report path (serve
// keeps it current); nothing when the policy names none.
func (s *Service) WriteReport(ctx context.Context, now time.Time) error {
	rf := s.Policy.Report
	if rf.Path == "" {
		return nil
	}
	var since time.Time
	if rf.Since > 0 {
		since = now.Add(-rf.Since)
	}
	data, err := s.Report(ctx, rf.Format, since, now, "")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(rf.Path), 0o750); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := durable.Replace(rf.Path, data, 0o640); err != nil {
		return fmt.Errorf("report %s: %w", rf.Path, err)
	}
	return nil
}
