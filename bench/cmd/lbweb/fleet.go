package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// fleetBench is a throwaway PostgreSQL serving as the fleet catalog.
type fleetBench struct {
	srv    *pgbin.Server
	url    string
	nHosts int
}

func hostName(i int) string { return fmt.Sprintf("h%02d", i) }

func startFleet(ctx context.Context, dir string, nHosts int) (*fleetBench, error) {
	b, err := pgbin.Find(ctx, 0)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "pgsock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return nil, err
	}
	s := &pgbin.Server{Bin: b, DataDir: filepath.Join(dir, "pgdata"), SocketDir: sock, LogFile: filepath.Join(dir, "pg.log")}
	if err := s.Init(ctx, pgbin.InitOptions{}); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	url := fmt.Sprintf("postgres://%s@/postgres?host=%s&port=%d&sslmode=disable", pgbin.DefaultUser, sock, s.Port)
	return &fleetBench{srv: s, url: url, nHosts: nHosts}, nil
}

func (f *fleetBench) stop() { f.srv.Stop(context.Background()) }

// fill makes the catalog's schema (as an agent starting does), then
// writes the other hosts' published assets, nRuns runs round robin over
// every host's assets, and nDrills drill reports per asset, with COPY.
func (f *fleetBench) fill(ctx context.Context, svc *app.Service, nAssets, nRuns, nDrills int) error {
	if _, err := svc.Fleet(ctx); err != nil {
		return err
	}
	conn, err := f.srv.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	now := time.Now().UTC()
	per := nAssets / f.nHosts
	owner := func(a int) string { return hostName(min(a/per, f.nHosts-1)) }
	var hosts, assets [][]any
	for h := range f.nHosts {
		hosts = append(hosts, []any{hostName(h), now.Add(-365 * 24 * time.Hour), now, int64(0), "bench"})
	}
	gold, silver := 3600.0, 86400.0
	for a := per; a < nAssets; a++ {
		target := &gold
		if a%2 == 1 {
			target = &silver
		}
		rpo := float64(a % 5000)
		state := "ok"
		if a%17 == 0 {
			state = "failing"
		}
		assets = append(assets, []any{owner(a), fmt.Sprintf("a%03d", a), "files", map[bool]string{true: "gold", false: "silver"}[a%2 == 0],
			now.Add(-time.Duration(rpo) * time.Second), rpo, target, state, `{"checks":[]}`, now})
	}
	if _, err := conn.Exec(ctx, `DELETE FROM hosts`); err != nil {
		return err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"hosts"}, []string{"host", "first_seen", "last_seen", "shipped_seq", "version"}, pgx.CopyFromRows(hosts)); err != nil {
		return fmt.Errorf("hosts: %w", err)
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"assets"}, []string{"host", "name", "kind", "tier", "last_backup", "rpo_seconds",
		"rpo_target_seconds", "state", "detail", "updated"}, pgx.CopyFromRows(assets)); err != nil {
		return fmt.Errorf("assets: %w", err)
	}
	step := 365 * 24 * time.Hour / time.Duration(max(1, nRuns))
	i := 0
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"runs"}, []string{"host", "id", "asset", "kind", "trigger", "slot", "started", "ended",
		"result", "bytes", "bytes_stored"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == nRuns {
			return nil, nil
		}
		at := now.Add(-time.Duration(nRuns-i) * step)
		a := i % nAssets
		i++
		return []any{owner(a), int64(i), fmt.Sprintf("a%03d", a), "backup", "schedule", at, at, at.Add(3 * time.Second), "ok", int64(800), int64(100)}, nil
	})); err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	var drills [][]any
	for a := range nAssets {
		for d := range nDrills {
			at := now.Add(-time.Duration(nDrills-d) * 30 * 24 * time.Hour)
			rep := &evidence.DrillReport{Version: 1, ID: fmt.Sprintf("a%03d-%d", a, d), Asset: fmt.Sprintf("a%03d", a), Kind: "files",
				Tier: "gold", Repository: "primary", Host: owner(a), Trigger: "schedule", Point: "latest", Started: at, Ended: at.Add(time.Minute),
				Phases:     []evidence.Phase{{Name: "fetch", Seconds: 20}, {Name: "write", Seconds: 30}, {Name: "checks", Seconds: 10}},
				RTOSeconds: 60, RPOSeconds: 5, RTOTargetSeconds: 3600, RPOTargetSeconds: 3600, Passed: d%5 != 0}
			doc, err := rep.Marshal()
			if err != nil {
				return err
			}
			drills = append(drills, []any{owner(a), rep.ID, rep.Asset, at, rep.Passed, string(doc)})
		}
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"drills"}, []string{"host", "id", "asset", "started", "passed", "report"}, pgx.CopyFromRows(drills)); err != nil {
		return fmt.Errorf("drills: %w", err)
	}
	_, err = conn.Exec(ctx, `ANALYZE`)
	return err
}

// timeReads times what a gathering of the overview reads from the fleet
// catalog: every host's published assets and newest drill per asset.
func (f *fleetBench) timeReads(ctx context.Context, svc *app.Service, n int) error {
	var times []time.Duration
	rows := 0
	for range n {
		t0 := time.Now()
		as, err := svc.FleetAssets(ctx)
		if err != nil {
			return err
		}
		if _, err := svc.FleetLastDrills(ctx); err != nil {
			return err
		}
		times = append(times, time.Since(t0))
		rows = len(as)
	}
	slices.Sort(times)
	fmt.Printf("%-16s p50 %8s  p95 %8s  (%d assets of %d hosts)\n", "fleet reads", pct(times, 50), pct(times, 95), rows, f.nHosts)
	return nil
}
