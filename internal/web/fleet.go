package web

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/health"
)

// fleetRows are the overview's rows of the other hosts of a fleet
// catalog (docs/fleet.md), from the states their agents published at
// their last check and the newest drill each shipped; judged by the same
// rules as this host's rows. None without a fleet catalog.
func (s *Server) fleetRows(ctx context.Context, me string, now time.Time) ([]AssetRow, error) {
	if !s.svc.FleetEnabled() {
		return nil, nil
	}
	assets, err := s.svc.FleetAssets(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: %w", err)
	}
	drills, err := s.svc.FleetLastDrills(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: %w", err)
	}
	var out []AssetRow
	for _, a := range assets {
		if a.Host == me {
			continue // read live above
		}
		row := AssetRow{Host: a.Host, Name: a.Name, Kind: a.Kind, Tier: a.Tier, LastBackup: a.LastBackup,
			Copies: []CopyRow{}, Alerts: []health.Result{}}
		if !a.LastBackup.IsZero() {
			age := now.Sub(a.LastBackup).Seconds()
			row.BackupAgeSeconds = &age
		}
		if a.RPOTargetSeconds != nil {
			row.RPOTargetSeconds = *a.RPOTargetSeconds
		}
		if a.RPOSeconds != nil {
			// A WAL lag as the agent measured it at its last check.
			rpo := *a.RPOSeconds
			row.RPOSeconds = &rpo
		}
		var detail struct {
			Checks []health.Result `json:"checks"`
		}
		if len(a.Detail) > 0 && json.Unmarshal(a.Detail, &detail) == nil {
			row.checks = detail.Checks
			for _, c := range detail.Checks {
				if c.Check == health.CheckWALLag {
					row.WALLagSeconds = c.Value
				}
				if !c.OK {
					row.Alerts = append(row.Alerts, c)
					row.Why = append(row.Why, c.Check+": "+c.Message)
				}
			}
		}
		if row.WALLagSeconds == nil && !a.LastBackup.IsZero() {
			// Without WAL the loss grows with the newest backup's age.
			rpo := now.Sub(a.LastBackup).Seconds()
			row.RPOSeconds = &rpo
		}
		if age := now.Sub(a.Updated); age > 10*time.Minute {
			row.Why = append(row.Why, fmt.Sprintf("published %s ago: its agent has not checked since", duration(age.Seconds())))
		}
		if d := drills[[2]string{a.Host, a.Name}]; d != nil {
			row.LastDrill = drillRow(d)
		}
		row.State = judge(&row)
		out = append(out, row)
	}
	return out, nil
}

// hostName is this host's name on the dashboard: its name in the fleet
// when there is a fleet catalog, else the machine's.
func (s *Server) hostName() string {
	if h := s.svc.FleetHost(); h != "" {
		return h
	}
	return host()
}
