package web

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// States of an asset on the overview, worst last.
const (
	StateOK      = "ok"      // green
	StateWarning = "warning" // amber: RPO past three quarters of the target, a copy catching up
	StateFailing = "failing" // red: a failing check (check --json), the RPO past its target, the last drill failed
)

// AssetRow is one asset on the overview and in GET /api/assets. Every
// number comes from the service functions the CLI prints: status
// (last backup, copy lag), check (WAL lag, failing checks) and the
// catalog's drill reports.
type AssetRow struct {
	Host string `json:"host"`
	Name string `json:"name"`
	Kind string `json:"kind"`
	Tier string `json:"tier,omitempty"`
	// LastBackup is status's last_snapshot_time of the primary.
	LastBackup       time.Time `json:"last_backup,omitzero"`
	BackupAgeSeconds *float64  `json:"backup_age_seconds"`
	// RPOSeconds is what a loss now would cost: check's WAL archive lag
	// for an asset with point-in-time recovery, otherwise the time since
	// the newest backup started; null when there is no backup.
	RPOSeconds       *float64 `json:"rpo_seconds"`
	RPOTargetSeconds float64  `json:"rpo_target_seconds"`
	RTOTargetSeconds float64  `json:"rto_target_seconds"`
	// WALLagSeconds is check's wal_lag value (PITR kinds).
	WALLagSeconds *float64  `json:"wal_lag_seconds,omitempty"`
	State         string    `json:"state"`
	Copies        []CopyRow `json:"copies"`
	LastDrill     *DrillRow `json:"last_drill,omitempty"`
	// Alerts are the asset's failing checks: what serve alerts on.
	Alerts []health.Result `json:"alerts"`
	// Why says what made the state what it is, one line each.
	Why []string `json:"why,omitempty"`

	checks []health.Result // every check of the asset, passing too
}

// CopyRow is one copy repository of an asset: status's lag and check's
// verdict on it.
type CopyRow struct {
	Repository string       `json:"repository"`
	Lag        *app.CopyLag `json:"lag,omitempty"`
	Error      string       `json:"error,omitempty"`
	OK         bool         `json:"ok"`
	Message    string       `json:"message"`
}

// DrillRow is a drill as the overview and the asset page show it.
type DrillRow struct {
	ID               string           `json:"id"`
	Started          time.Time        `json:"started"`
	Passed           bool             `json:"passed"`
	Aborted          bool             `json:"aborted,omitempty"`
	RTOSeconds       float64          `json:"rto_seconds"`
	RPOSeconds       float64          `json:"rpo_seconds"`
	RTOTargetSeconds float64          `json:"rto_target_seconds,omitempty"`
	RPOTargetSeconds float64          `json:"rpo_target_seconds,omitempty"`
	RTOMet           *bool            `json:"rto_met,omitempty"`
	RPOMet           *bool            `json:"rpo_met,omitempty"`
	Phases           []evidence.Phase `json:"phases"`
	Error            string           `json:"error,omitempty"`
}

func drillRow(d *evidence.DrillReport) *DrillRow {
	return &DrillRow{ID: d.ID, Started: d.Started, Passed: d.Passed, Aborted: d.Aborted, RTOSeconds: d.RTOSeconds,
		RPOSeconds: d.RPOSeconds, RTOTargetSeconds: d.RTOTargetSeconds, RPOTargetSeconds: d.RPOTargetSeconds,
		RTOMet: d.RTOMet, RPOMet: d.RPOMet, Phases: d.Phases, Error: d.Error}
}

// Overview is every asset with its state, and the checks of
// repositories (verify, authenticity) that belong to no asset.
type Overview struct {
	Generated    time.Time       `json:"generated"`
	Assets       []AssetRow      `json:"assets"`
	Repositories []health.Result `json:"repositories"`
}

// Filter selects assets of the overview (query parameters host, tier,
// kind, state; "" for any).
type Filter struct {
	Host, Tier, Kind, State string
}

func (f Filter) keep(r *AssetRow) bool {
	return (f.Host == "" || f.Host == r.Host) && (f.Tier == "" || f.Tier == r.Tier) &&
		(f.Kind == "" || f.Kind == r.Kind) && (f.State == "" || f.State == r.State)
}

// host is this host's name: every asset of a policy is this host's (the
// fleet catalog of issue 15 would add others').
func host() string {
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}

// overview is the rows of every asset: gathered anew, or the last ones
// when younger than Options.Fresh. The caller may change the Assets
// slice it gets, not the rows in it.
func (s *Server) overview(ctx context.Context, now time.Time) (*Overview, error) {
	s.gather.Lock()
	defer s.gather.Unlock()
	if c := s.cached; c != nil && s.fresh > 0 && now.Sub(c.Generated) < s.fresh {
		out := *c
		out.Assets = slices.Clone(c.Assets)
		return &out, nil
	}
	ov, err := s.gatherOverview(ctx, now)
	if err != nil {
		return nil, err
	}
	s.cached = ov
	out := *ov
	out.Assets = slices.Clone(ov.Assets)
	return &out, nil
}

// gatherOverview reads the rows of every asset of the policy.
func (s *Server) gatherOverview(ctx context.Context, now time.Time) (*Overview, error) {
	svc := s.svc
	p := svc.Policy
	var assets []*policy.Asset
	for i := range p.Assets {
		assets = append(assets, &p.Assets[i])
	}
	rows, _, err := svc.Status(ctx, assets, now)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	results, err := svc.Health(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	ov := &Overview{Generated: now, Assets: []AssetRow{}, Repositories: []health.Result{}}
	byAsset := map[string][]app.StatusRow{}
	for _, r := range rows {
		byAsset[r.Asset] = append(byAsset[r.Asset], r)
	}
	checks := map[string][]health.Result{}
	for _, r := range results {
		if r.Asset == "" {
			ov.Repositories = append(ov.Repositories, r)
			continue
		}
		checks[r.Asset] = append(checks[r.Asset], r)
	}
	h := s.hostName()
	for _, a := range assets {
		var last *evidence.DrillReport
		ds, err := svc.Drills(ctx, a.Name, 1)
		if err != nil {
			return nil, fmt.Errorf("drills of %s: %w", a.Name, err)
		}
		if len(ds) > 0 {
			last = ds[0]
		}
		ov.Assets = append(ov.Assets, assetRow(p, a, h, byAsset[a.Name], checks[a.Name], last, now))
	}
	others, err := s.fleetRows(ctx, h, now)
	if err != nil {
		// This host's rows still stand: the page says what is missing.
		ov.Repositories = append(ov.Repositories, health.Result{Check: "fleet_catalog", OK: false,
			Message: "the other hosts' assets are not shown: " + err.Error()})
	}
	ov.Assets = append(ov.Assets, others...)
	return ov, nil
}

func assetRow(p *policy.Policy, a *policy.Asset, host string, rows []app.StatusRow, checks []health.Result, last *evidence.DrillReport, now time.Time) AssetRow {
	row := AssetRow{Host: host, Name: a.Name, Kind: string(a.Kind), Tier: a.Tier, Copies: []CopyRow{}, Alerts: []health.Result{}}
	if t, ok := p.Tiers[a.Tier]; ok {
		row.RPOTargetSeconds = time.Duration(t.RPO).Seconds()
		row.RTOTargetSeconds = time.Duration(t.RTO).Seconds()
	}
	copyCheck := map[string]health.Result{}
	pitr := false
	row.checks = checks
	for _, c := range checks {
		switch c.Check {
		case health.CheckWALLag:
			pitr = true
			row.WALLagSeconds = c.Value
		case health.CheckCopy:
			copyCheck[c.Subject] = c
		}
		if !c.OK {
			row.Alerts = append(row.Alerts, c)
			row.Why = append(row.Why, c.Check+": "+c.Message)
		}
	}
	for _, r := range rows {
		if r.Role == "primary" {
			row.LastBackup = r.LastSnapshotTime
			if !r.LastSnapshotTime.IsZero() {
				age := now.Sub(r.LastSnapshotTime).Seconds()
				row.BackupAgeSeconds = &age
			}
			if pitr {
				row.RPOSeconds = row.WALLagSeconds
			} else if !r.LastSnapshotStart.IsZero() {
				rpo := now.Sub(r.LastSnapshotStart).Seconds()
				row.RPOSeconds = &rpo
			}
			continue
		}
		c := copyCheck[r.Repository]
		row.Copies = append(row.Copies, CopyRow{Repository: r.Repository, Lag: r.Lag, Error: r.Error, OK: c.OK, Message: c.Message})
	}
	if last != nil {
		row.LastDrill = drillRow(last)
	}
	row.State = judge(&row)
	return row
}

// judge is the colour of an asset. A failing check is red whatever else;
// the rest reads the numbers the row shows.
func judge(r *AssetRow) string {
	state := StateOK
	worse := func(s, why string) {
		if s == StateFailing || state == StateOK {
			state = s
		}
		r.Why = append(r.Why, why)
	}
	if len(r.Alerts) > 0 {
		state = StateFailing
	}
	switch {
	case r.RPOSeconds == nil:
		worse(StateFailing, "no backup")
	case r.RPOTargetSeconds > 0 && *r.RPOSeconds > r.RPOTargetSeconds:
		worse(StateFailing, fmt.Sprintf("RPO now %s exceeds the target %s", duration(*r.RPOSeconds), duration(r.RPOTargetSeconds)))
	case r.RPOTargetSeconds > 0 && *r.RPOSeconds > 0.75*r.RPOTargetSeconds:
		worse(StateWarning, fmt.Sprintf("RPO now %s is past three quarters of the target %s", duration(*r.RPOSeconds), duration(r.RPOTargetSeconds)))
	}
	if d := r.LastDrill; d != nil && !d.Passed && !d.Aborted {
		worse(StateFailing, "the last drill failed: "+d.Error)
	}
	for _, c := range r.Copies {
		if c.OK && c.Lag != nil && (c.Lag.WALFiles > 0 || c.Lag.Snapshots > 0) {
			worse(StateWarning, fmt.Sprintf("copy %s: %s", c.Repository, c.Message))
		}
	}
	return state
}

// AssetDetail is the asset page and GET /api/assets/{host}/{name}.
type AssetDetail struct {
	AssetRow
	// Remote says the asset is another host's: the page holds what its
	// agent published to the fleet catalog (state, checks, drills), and
	// its repositories, snapshots and restore commands are on that
	// host's own dashboard.
	Remote   bool            `json:"remote,omitempty"`
	Info     app.AssetInfo   `json:"info"`
	Drills   []DrillRow      `json:"drills"`
	Checks   []health.Result `json:"checks"`
	Commands []Command       `json:"restore_commands"`
}

// Command is a restore command line and what it does.
type Command struct {
	What string `json:"what"`
	Line string `json:"line"`
}

func (s *Server) assetDetail(ctx context.Context, name string, now time.Time) (*AssetDetail, error) {
	svc := s.svc
	ov, err := s.overview(ctx, now)
	if err != nil {
		return nil, err
	}
	var d AssetDetail
	found := false
	for _, r := range ov.Assets {
		if r.Name == name {
			d.AssetRow, found = r, true
		}
	}
	if !found {
		return nil, errNotFound
	}
	a, err := svc.Policy.Asset(name)
	if err != nil {
		return nil, errNotFound
	}
	infos, err := svc.Info(ctx, []*policy.Asset{a}, now)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	d.Info = infos[0]
	ds, err := svc.Drills(ctx, name, 20)
	if err != nil {
		return nil, err
	}
	d.Drills = []DrillRow{}
	for _, x := range ds {
		d.Drills = append(d.Drills, *drillRow(x))
	}
	d.Checks = append([]health.Result{}, d.AssetRow.checks...)
	d.Commands = restoreCommands(svc, d.Info)
	return &d, nil
}

// remoteDetail is the page of an asset another agent of the fleet
// protects, from the fleet catalog alone.
func (s *Server) remoteDetail(ctx context.Context, host, name string, now time.Time) (*AssetDetail, error) {
	ov, err := s.overview(ctx, now)
	if err != nil {
		return nil, err
	}
	d := AssetDetail{Remote: true, Drills: []DrillRow{}, Commands: []Command{}}
	found := false
	for _, r := range ov.Assets {
		if r.Host == host && r.Name == name {
			d.AssetRow, found = r, true
		}
	}
	if !found {
		return nil, errNotFound
	}
	ds, err := s.svc.FleetAssetDrills(ctx, host, name, 20)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: %w", err)
	}
	for _, x := range ds {
		d.Drills = append(d.Drills, *drillRow(x))
	}
	d.Checks = append([]health.Result{}, d.AssetRow.checks...)
	return &d, nil
}

// restoreCommands are the command lines that restore the asset: the
// runbook's (app.Service.RestoreCommands), newest point first, then the
// earlier points.
func restoreCommands(svc *app.Service, info app.AssetInfo) []Command {
	plan := svc.RestoreCommands(info, app.RunbookRoot)
	out := []Command{}
	for _, l := range append(plan.Latest, plan.ToTime...) {
		out = append(out, Command{What: "restore " + l.What, Line: l.Line})
	}
	return out
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// duration is seconds as the CLI prints a duration (rounded to the second).
func duration(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
