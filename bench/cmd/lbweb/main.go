// Command lbweb measures the dashboard (docs/web.md):
//
//	lbweb [-assets 500] [-runs 1000000] [-drills 12] [-n 40] [-dir DIR] [-catalog sqlite|postgres] [-hosts 20]
//
// builds a policy of -assets files assets in one file:// repository, backs
// each up once through the service, writes -runs runs and -drills drill
// reports per asset into the SQLite catalog (through internal/catalog),
// then times the overview page, an asset page and GET /api/assets as the
// server serves them (the handler's time, no network), n times each, and
// prints the first request (which gathers the overview: every repository
// read, every check run), then p50, p95 and the page's weight of the
// requests served from the gathered overview (lifeboat web keeps one for
// 30 s). Targets: overview ≤ 150 ms p95
// and ≤ 300 KB, asset page ≤ 200 ms p95.
//
// With -catalog postgres it starts a throwaway PostgreSQL as the fleet
// catalog (docs/fleet.md) of -hosts hosts: this host backs up its share of
// the assets, and the others' assets, the runs and the drill reports are
// written straight into the fleet catalog's tables (fleet.go); it also
// times the fleet catalog's part of a gathering (every host's published
// assets and newest drills).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/web"
)

func main() {
	assets := flag.Int("assets", 500, "assets in the policy")
	runs := flag.Int("runs", 1_000_000, "runs in the catalog")
	drills := flag.Int("drills", 12, "drill reports per asset")
	n := flag.Int("n", 40, "requests per page")
	dir := flag.String("dir", "", "work directory (default: a temporary one, removed)")
	cat := flag.String("catalog", "sqlite", "sqlite (one host) or postgres (a fleet catalog of -hosts hosts)")
	hosts := flag.Int("hosts", 20, "hosts of the fleet (-catalog postgres)")
	flag.Parse()
	if *cat != "sqlite" && *cat != "postgres" {
		fmt.Fprintln(os.Stderr, "lbweb: -catalog is sqlite or postgres")
		os.Exit(2)
	}
	if *cat == "sqlite" {
		*hosts = 1
	}
	if err := run(*assets, *runs, *drills, *n, *dir, *hosts); err != nil {
		fmt.Fprintln(os.Stderr, "lbweb:", err)
		os.Exit(1)
	}
}

func run(nAssets, nRuns, nDrills, n int, dir string, nHosts int) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "lbweb-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var b strings.Builder
	var fl *fleetBench
	if nHosts > 1 {
		var err error
		if fl, err = startFleet(ctx, dir, nHosts); err != nil {
			return err
		}
		defer fl.stop()
		fmt.Fprintf(&b, "catalog: '%s'\nhost: %s\n", fl.url, hostName(0))
	}
	local := nAssets / max(1, nHosts) // this host's share; the rest are the other hosts'
	fmt.Fprintf(&b, "state_dir: %[1]s/state\nrepositories:\n  - {name: primary, url: \"file://%[1]s/repo\", key_file: %[1]s/key}\n", dir)
	b.WriteString("tiers:\n  gold: {rpo: 1h, rto: 1h}\n  silver: {rpo: 24h, rto: 4h}\nassets:\n")
	for i := range local {
		src := filepath.Join(dir, "src", fmt.Sprintf("a%03d", i))
		if err := os.MkdirAll(src, 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "data"), []byte(strings.Repeat(fmt.Sprintf("asset %d\n", i), 100)), 0o600); err != nil {
			return err
		}
		tier := "gold"
		if i%2 == 1 {
			tier = "silver"
		}
		fmt.Fprintf(&b, "  - {name: a%03d, kind: files, tier: %s, schedule: '@daily', paths: [%s], repositories: [primary]}\n", i, tier, src)
	}
	cfg := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "repo"), 0o700); err != nil {
		return err
	}
	if err := repo.GenerateKeyFile(filepath.Join(dir, "key")); err != nil {
		return err
	}
	svc, err := app.Load(cfg, app.Options{})
	if err != nil {
		return err
	}
	defer svc.Close()
	rp := &svc.Policy.Repositories[0]
	be, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	sec, err := app.SecretFor(rp)
	if err != nil {
		return err
	}
	if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
		return err
	}
	be.Close()
	start := time.Now()
	for i := range local {
		if _, err := svc.Backup(ctx, app.BackupRequest{Asset: fmt.Sprintf("a%03d", i)}); err != nil {
			return err
		}
	}
	fmt.Printf("setup: %d backups in %s\n", local, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if fl != nil {
		if err := fl.fill(ctx, svc, nAssets, nRuns, nDrills); err != nil {
			return err
		}
	} else if err := fillCatalog(ctx, catalog.Path(svc.Policy.StateDir), nAssets, nRuns, nDrills); err != nil {
		return err
	}
	fmt.Printf("setup: %d runs and %d drills in the catalog in %s\n", nRuns, nAssets*nDrills, time.Since(start).Round(time.Millisecond))

	// The dashboard as lifeboat web runs it: an overview gathered once
	// serves the pages for a while. The first request pays the gathering;
	// it is printed apart.
	srv := web.New(svc, web.Options{Fresh: time.Hour})
	_, token, err := srv.Accounts().CreateToken(web.Viewer, time.Now())
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	if fl != nil {
		host = hostName(0)
	}
	for _, p := range []struct{ name, path string }{
		{"overview page", "/"},
		{"GET /api/assets", "/api/assets"},
		{"asset page", "/assets/" + host + "/a007"},
	} {
		var times []time.Duration
		size := 0
		for i := range n + 1 {
			req := httptest.NewRequestWithContext(ctx, "GET", p.path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			w := httptest.NewRecorder()
			t0 := time.Now()
			srv.ServeHTTP(w, req)
			took := time.Since(t0)
			if w.Code != http.StatusOK {
				return fmt.Errorf("%s: %d %s", p.path, w.Code, w.Body.String())
			}
			if i == 0 {
				fmt.Printf("%-16s first request %s\n", p.name, took.Round(time.Millisecond))
				continue
			}
			times = append(times, took)
			size = w.Body.Len()
		}
		slices.Sort(times)
		fmt.Printf("%-16s p50 %8s  p95 %8s  max %8s  %7.1f KB\n", p.name, pct(times, 50), pct(times, 95), times[len(times)-1].Round(time.Millisecond), float64(size)/1024)
	}
	if fl != nil {
		return fl.timeReads(ctx, svc, n)
	}
	return nil
}

func pct(ts []time.Duration, p int) time.Duration {
	i := (len(ts)*p + 99) / 100
	return ts[max(0, i-1)].Round(100 * time.Microsecond)
}

// fillCatalog writes a year of runs, round robin over the assets, and
// drill reports with phases, through the catalog's own API.
func fillCatalog(ctx context.Context, path string, nAssets, nRuns, nDrills int) error {
	c, err := catalog.Open(ctx, path)
	if err != nil {
		return err
	}
	defer c.Close()
	now := time.Now()
	step := 365 * 24 * time.Hour / time.Duration(max(1, nRuns))
	for i := range nRuns {
		at := now.Add(-time.Duration(nRuns-i) * step)
		r := &catalog.Run{Asset: fmt.Sprintf("a%03d", i%nAssets), Kind: "backup", Trigger: "schedule", Slot: at, Start: at,
			End: at.Add(3 * time.Second), Result: catalog.OK, Bytes: 800, BytesStored: 100}
		if err := c.Insert(ctx, r); err != nil {
			return err
		}
	}
	for a := range nAssets {
		for d := range nDrills {
			at := now.Add(-time.Duration(nDrills-d) * 30 * 24 * time.Hour)
			rep := &evidence.DrillReport{Version: 1, ID: fmt.Sprintf("a%03d-%d", a, d), Asset: fmt.Sprintf("a%03d", a), Kind: "files",
				Tier: "gold", Repository: "primary", Host: "bench", Trigger: "schedule", Point: "latest", Started: at, Ended: at.Add(time.Minute),
				Phases:     []evidence.Phase{{Name: "fetch", Seconds: 20}, {Name: "write", Seconds: 30}, {Name: "checks", Seconds: 10}},
				RTOSeconds: 60, RPOSeconds: 5, RTOTargetSeconds: 3600, RPOTargetSeconds: 3600, Passed: d%5 != 0}
			if err := c.RecordDrill(ctx, rep); err != nil {
				return err
			}
		}
	}
	return nil
}
