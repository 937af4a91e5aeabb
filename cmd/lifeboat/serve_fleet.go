package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/metrics"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// fleetParts are this agent's part in a fleet, wired into the daemon.
type fleetParts struct {
	store  *fleet.Store
	run    daemon.FleetFunc
	alerts daemon.AlertFunc
	leads  func() bool // whether this agent leads now
}

// openFleet opens the fleet catalog of p, a zero fleetParts when p has
// none, and wires this agent's part in the fleet (fleetAgent). A catalog
// out of reach at start does not stop the agent: its backups go on, and
// the fleet's work starts when the catalog answers.
func openFleet(ctx context.Context, p *policy.Policy, log *slog.Logger, now func() time.Time, mets *metrics.Metrics) (fleetParts, error) {
	if !p.Fleet.Enabled() {
		return fleetParts{}, nil
	}
	store, err := fleet.New(fleet.Config{URL: p.Fleet.Catalog.Reveal(), Host: p.Fleet.Host, Version: currentVersion().Version})
	if err != nil {
		return fleetParts{}, err
	}
	if err := store.Migrate(ctx); err != nil {
		log.Warn("fleet catalog not reachable at start; working on, and trying again", "error", oneLine(err))
	}
	parts, err := fleetAgent(p, store, log, now, mets)
	if err != nil {
		store.Close()
		return fleetParts{}, err
	}
	return parts, nil
}

// fleetAgent wires this agent's part in a fleet into the daemon
// (docs/fleet.md): its checks' problems go into the fleet's alerts table
// rather than to the destinations directly, and it campaigns for the
// leadership, running the fleet duties while it leads. The leadership
// holds a connection of its own; everything else uses store's pool.
func fleetAgent(p *policy.Policy, store *fleet.Store, log *slog.Logger, now func() time.Time, mets *metrics.Metrics) (fleetParts, error) {
	host := store.Host()
	leader, err := fleet.NewLeader(fleet.LeaderConfig{URL: p.Fleet.Catalog.Reveal(), Host: host, Log: log})
	if err != nil {
		return fleetParts{}, err
	}
	// Which agent leads, for the on-call's dashboards: exactly one of the
	// fleet at 1.
	if err := mets.WatchFleetLeader(leader.Leads); err != nil {
		return fleetParts{}, fmt.Errorf("fleet: metrics: %w", err)
	}
	run := func(ctx context.Context, current func() *policy.Policy) {
		leader.Run(ctx, func(ctx context.Context) {
			d := &fleet.Duties{Store: store, Host: host, Policy: current, Now: now, Log: log}
			d.Run(ctx)
		})
	}
	alerts := func(ctx context.Context, _ *policy.Policy, problems []alert.Problem) error {
		if err := store.Migrate(ctx); err != nil {
			return err
		}
		return store.SyncAlerts(ctx, host, fleet.OnHost(host, problems), now())
	}
	return fleetParts{store: store, run: run, alerts: alerts, leads: leader.Leads}, nil
}
