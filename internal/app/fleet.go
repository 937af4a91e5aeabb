package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// The fleet catalog (docs/fleet.md, internal/fleet): with the policy's
// catalog key set, this host's catalog queues every record for it, serve
// ships the queue, and the reads of runs, status, check, report and the
// dashboard cover every host.

// CatalogOptions are how this host's catalog is opened under p: with an
// outbox when p names a fleet catalog.
func CatalogOptions(p *policy.Policy) []catalog.Option {
	if p.Fleet.Enabled() {
		return []catalog.Option{catalog.WithOutbox()}
	}
	return nil
}

// openCatalog opens this host's catalog for writing.
func (s *Service) openCatalog(ctx context.Context) (*catalog.Catalog, error) {
	return catalog.Open(ctx, catalog.Path(s.Policy.StateDir), CatalogOptions(s.Policy)...)
}

// FleetEnabled says whether reads cover every host of a fleet catalog.
func (s *Service) FleetEnabled() bool { return s.Policy.Fleet.Enabled() }

// Fleet is the fleet catalog, opened once per pool and migrated; nil
// when the policy names none.
func (s *Service) Fleet(ctx context.Context) (*fleet.Store, error) {
	f := s.Policy.Fleet
	if !f.Enabled() {
		return nil, nil
	}
	key := f.Catalog.Reveal() + "\x00" + f.Host
	s.pool.mu.Lock()
	st := s.pool.fleets[key]
	if st == nil {
		var err error
		if st, err = fleet.New(fleet.Config{URL: f.Catalog.Reveal(), Host: f.Host}); err != nil {
			s.pool.mu.Unlock()
			return nil, err
		}
		if s.pool.fleets == nil {
			s.pool.fleets = map[string]*fleet.Store{}
		}
		s.pool.fleets[key] = st
	}
	s.pool.mu.Unlock()
	// Migrate is done once per store; until it succeeds each use tries.
	if err := st.Migrate(ctx); err != nil {
		return nil, err
	}
	return st, nil
}

// RunShipper sends this host's outbox to the fleet catalog until ctx is
// done, riding out the catalog's outages (serve runs it). It returns at
// once when the policy names no fleet catalog.
func (s *Service) RunShipper(ctx context.Context) error {
	f := s.Policy.Fleet
	if !f.Enabled() {
		return nil
	}
	st, err := fleet.New(fleet.Config{URL: f.Catalog.Reveal(), Host: f.Host})
	if err != nil {
		return err
	}
	defer st.Close()
	// A catalog of its own: the daemon's one connection is not held up
	// by shipping, and SQLite's WAL mode serialises the writers.
	c, err := s.openCatalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	sh := &fleet.Shipper{Store: st, Catalog: c, Logger: s.Log}
	return sh.Run(ctx)
}

// FleetAssets lists the asset states every host of the fleet published;
// nil when the policy names no fleet catalog.
func (s *Service) FleetAssets(ctx context.Context) ([]fleet.Asset, error) {
	st, err := s.Fleet(ctx)
	if st == nil || err != nil {
		return nil, err
	}
	return st.Assets(ctx)
}

// FleetDrills lists drill reports of every host; nil without a fleet
// catalog.
func (s *Service) FleetDrills(ctx context.Context, f fleet.DrillFilter) ([]fleet.Drill, error) {
	st, err := s.Fleet(ctx)
	if st == nil || err != nil {
		return nil, err
	}
	return st.Drills(ctx, f)
}

// publishAssets queues this host's asset states, judged by a health
// check, for the fleet catalog: what every other host's status, check and
// dashboard show of them. It does nothing without a fleet catalog.
func (s *Service) publishAssets(ctx context.Context, now time.Time, f *health.Facts, results []health.Result) error {
	p := s.Policy
	if !p.Fleet.Enabled() {
		return nil
	}
	c, err := s.openCatalog(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := range p.Assets {
		a := &p.Assets[i]
		row := AssetState(p, a, f.Assets[a.Name], results, now)
		row.Host = p.Fleet.Host
		if err := c.Publish(ctx, catalog.OutboxAsset, a.Name, row); err != nil {
			return err
		}
	}
	return nil
}

// AssetState is what a health check says of one asset, as the fleet
// catalog keeps it: the state (failing when a check of it fails, ok when
// all pass, unknown when nothing was judged), the newest backup, and the
// RPO now (the WAL's lag for PITR assets, the newest backup's age for
// the others) against the tier's target.
func AssetState(p *policy.Policy, a *policy.Asset, af *health.AssetFacts, results []health.Result, now time.Time) fleet.Asset {
	row := fleet.Asset{Name: a.Name, Kind: string(a.Kind), Tier: a.Tier, State: "unknown", Updated: now.UTC()}
	var mine []health.Result
	for _, r := range results {
		if r.Asset == a.Name {
			mine = append(mine, r)
		}
	}
	if len(mine) > 0 {
		row.State = "ok"
		if slices.ContainsFunc(mine, func(r health.Result) bool { return !r.OK }) {
			row.State = "failing"
		}
	}
	if t, ok := p.Tiers[a.Tier]; ok && t.RPO > 0 {
		v := time.Duration(t.RPO).Seconds()
		row.RPOTargetSeconds = &v
	}
	if af != nil {
		row.LastBackup = af.NewestBackup.UTC()
		switch {
		case af.WAL != nil:
			v := af.WAL.LagSeconds
			row.RPOSeconds = &v
		case !af.NewestBackup.IsZero():
			v := now.Sub(af.NewestBackup).Seconds()
			row.RPOSeconds = &v
		}
	}
	if doc, err := json.Marshal(map[string]any{"checks": mine}); err == nil {
		row.Detail = doc
	}
	return row
}

// fleetRuns lists runs of every host when the policy names a fleet
// catalog; ok false when it names none.
func (s *Service) fleetRuns(ctx context.Context, f catalog.Filter) ([]catalog.Run, bool, error) {
	st, err := s.Fleet(ctx)
	if err != nil {
		return nil, true, fmt.Errorf("runs: %w", err)
	}
	if st == nil {
		return nil, false, nil
	}
	runs, err := st.Runs(ctx, f)
	return runs, true, err
}

// fleetReportInput is the report's runs and (withDrills) drills from the
// fleet catalog: every host's, another host's asset named host/name.
func (s *Service) fleetReportInput(ctx context.Context, since time.Time, withDrills bool, drills []*evidence.DrillReport) ([]catalog.Run, []*evidence.DrillReport, error) {
	st, err := s.Fleet(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("report: %w", err)
	}
	me := s.Policy.Fleet.Host
	name := func(host, asset string) string {
		if host == me {
			return asset
		}
		return host + "/" + asset
	}
	runs, err := st.Runs(ctx, catalog.Filter{Since: since})
	if err != nil {
		return nil, nil, err
	}
	for i := range runs {
		runs[i].Asset = name(runs[i].Host, runs[i].Asset)
	}
	if !withDrills {
		return runs, drills, nil
	}
	ds, err := st.Drills(ctx, fleet.DrillFilter{Since: since})
	if err != nil {
		return nil, nil, err
	}
	drills = drills[:0]
	for _, d := range ds {
		r := *d.Report
		r.Asset = name(d.Host, r.Asset)
		drills = append(drills, &r)
	}
	return runs, drills, nil
}

// FleetAssetDrills is the newest drills (at most limit) of one asset of
// one host, from the fleet catalog; nil without one.
func (s *Service) FleetAssetDrills(ctx context.Context, host, assetName string, limit int) ([]*evidence.DrillReport, error) {
	ds, err := s.FleetDrills(ctx, fleet.DrillFilter{Hosts: []string{host}, Asset: assetName, Limit: limit})
	if err != nil {
		return nil, err
	}
	out := make([]*evidence.DrillReport, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Report)
	}
	return out, nil
}

// FleetLastDrills is the newest drill of each asset of each host, keyed
// by host and asset name; nil without a fleet catalog.
func (s *Service) FleetLastDrills(ctx context.Context) (map[[2]string]*evidence.DrillReport, error) {
	st, err := s.Fleet(ctx)
	if st == nil || err != nil {
		return nil, err
	}
	ds, err := st.LastDrills(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[[2]string]*evidence.DrillReport, len(ds))
	for _, d := range ds {
		out[[2]string{d.Host, d.Report.Asset}] = d.Report
	}
	return out, nil
}

// FleetHost is this agent's name in the fleet ("" without a fleet
// catalog).
func (s *Service) FleetHost() string {
	if !s.FleetEnabled() {
		return ""
	}
	return s.Policy.Fleet.Host
}
