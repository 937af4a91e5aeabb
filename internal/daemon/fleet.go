package daemon

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// FleetFunc is this agent's part in a fleet (docs/fleet.md): it campaigns
// for the fleet's leadership until ctx ends and runs the fleet duties
// while it leads. policy returns the policy in force, reloads included.
type FleetFunc func(ctx context.Context, policy func() *policy.Policy)

// AlertFunc takes the problems of each check in place of the policy's
// alert destinations: in a fleet they go into the shared alerts table,
// and the leader delivers them, once.
type AlertFunc func(ctx context.Context, p *policy.Policy, problems []alert.Problem) error

// startFleet runs Config.Fleet beside the schedules; the function it
// returns stops it and waits, at most backgroundStopWait, for it to give
// the leadership up.
func (d *Daemon) startFleet(ctx context.Context) func() {
	if d.cfg.Fleet == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.cfg.Fleet(ctx, d.current.Load)
	}()
	return func() {
		cancel()
		t := d.clock.NewTimer(d.clock.Now().Add(backgroundStopWait))
		defer t.Stop()
		select {
		case <-done:
		case <-t.C():
			d.log.Warn("fleet duties did not stop in time")
		}
	}
}

// drillsHere reports whether this agent runs p's scheduled drills: every
// agent does unless drill_host names another.
func drillsHere(p *policy.Policy) bool {
	return p.DrillHost == "" || p.DrillHost == p.Fleet.Host
}
