package main

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// startShipper ships this host's outbox to the fleet catalog until the
// function it returns is called (nothing without a fleet catalog).
func startShipper(ctx context.Context, svc *app.Service) func() {
	if !svc.FleetEnabled() {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := svc.RunShipper(ctx); err != nil && ctx.Err() == nil {
			svc.Log.Error("fleet shipper stopped", "error", oneLine(err))
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// printFleetCheck lists, after check's own table, every host's assets as
// their agents last published them to the fleet catalog (nothing without
// one). The exit status stays this host's: the fleet-wide check and its
// alerts are the fleet leader's duty.
func printFleetCheck(ctx context.Context, g *globalOptions, p *policy.Policy, pool *app.Pool) error {
	svc := app.New(p, app.Options{Log: g.log, Pool: pool})
	if !svc.FleetEnabled() {
		return nil
	}
	rows, err := svc.FleetAssets(ctx)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	return printFleetAssets(g, rows, time.Now())
}
