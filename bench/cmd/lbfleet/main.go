// Command lbfleet measures what the fleet catalog (docs/fleet.md) costs
// an agent's backups:
//
//	lbfleet [-size 256] [-change 32] [-rounds 5] [-dir DIR]
//
// It starts a throwaway PostgreSQL as the fleet catalog and makes two
// policies of the same files asset (-size MiB in 1 MiB files) over
// repositories of their own: one with the SQLite catalog only, one with
// `catalog:` set, whose shipper runs in the background as under
// lifeboat serve. Each round rewrites -change MiB of the files, then
// backs up through both services in turn (the order alternating), each
// backup as a scheduled run records it: the backup with its audit event,
// then the run in the catalog (and, with the fleet catalog, its outbox).
// It prints every round's walls and the medians. Target: the fleet's
// within 2 % of SQLite's.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

func main() {
	size := flag.Int("size", 256, "MiB of files in the asset")
	change := flag.Int("change", 32, "MiB rewritten before each round")
	rounds := flag.Int("rounds", 5, "backups per policy")
	dir := flag.String("dir", "", "work directory (default: a temporary one, removed)")
	flag.Parse()
	if err := run(*size, *change, *rounds, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "lbfleet:", err)
		os.Exit(1)
	}
}

func run(size, change, rounds int, dir string) error {
	ctx := context.Background()
	if dir == "" {
		d, err := os.MkdirTemp("", "lbfleet-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	bin, err := pgbin.Find(ctx, 0)
	if err != nil {
		return err
	}
	sock := filepath.Join(dir, "pgsock")
	if err := os.MkdirAll(sock, 0o700); err != nil {
		return err
	}
	srv := &pgbin.Server{Bin: bin, DataDir: filepath.Join(dir, "pgdata"), SocketDir: sock, LogFile: filepath.Join(dir, "pg.log")}
	if err := srv.Init(ctx, pgbin.InitOptions{}); err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Stop(context.WithoutCancel(ctx))
	url := fmt.Sprintf("postgres://%s@/postgres?host=%s&port=%d&sslmode=disable", pgbin.DefaultUser, sock, srv.Port)

	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return err
	}
	for i := range size {
		if err := writeRandom(filepath.Join(src, fmt.Sprintf("f%04d", i))); err != nil {
			return err
		}
	}
	sqlite, err := service(ctx, dir, "sqlite", src, "")
	if err != nil {
		return err
	}
	defer sqlite.Close()
	fleet, err := service(ctx, dir, "fleet", src, fmt.Sprintf("catalog: '%s'\nhost: bench-1\n", url))
	if err != nil {
		return err
	}
	defer fleet.Close()
	sctx, stop := context.WithCancel(ctx)
	shipped := make(chan error, 1)
	go func() { shipped <- fleet.RunShipper(sctx) }()
	defer func() {
		stop()
		<-shipped
	}()

	// A first backup of each, not timed: the rounds back up changes.
	for _, svc := range []*app.Service{sqlite, fleet} {
		if _, _, err := backup(ctx, svc); err != nil {
			return err
		}
	}
	var ts, tf, rs, rf []time.Duration
	for r := range rounds {
		for i := range change {
			if err := writeRandom(filepath.Join(src, fmt.Sprintf("f%04d", (r*change+i)%size))); err != nil {
				return err
			}
		}
		order := []*app.Service{sqlite, fleet}
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, svc := range order {
			d, rec, err := backup(ctx, svc)
			if err != nil {
				return err
			}
			if svc == sqlite {
				ts, rs = append(ts, d), append(rs, rec)
			} else {
				tf, rf = append(tf, d), append(rf, rec)
			}
		}
		fmt.Printf("round %d: sqlite %s  fleet %s\n", r+1, ts[r].Round(time.Millisecond), tf[r].Round(time.Millisecond))
	}
	ms, mf := median(ts), median(tf)
	fmt.Printf("median: sqlite %s  fleet %s  (%+.1f %%)\n", ms.Round(time.Millisecond), mf.Round(time.Millisecond),
		100*(mf.Seconds()-ms.Seconds())/ms.Seconds())
	// The one step that differs on the backup's path: recording the run
	// (with the fleet catalog, also its outbox row).
	fmt.Printf("record: sqlite %s  fleet %s  (the fleet's extra: %.2f %% of its backup)\n", median(rs).Round(10*time.Microsecond),
		median(rf).Round(10*time.Microsecond), 100*(median(rf)-median(rs)).Seconds()/mf.Seconds())
	// Every run reached the catalog: the measurement is of a working
	// shipper, not of one that gave up.
	deadline := time.Now().Add(time.Minute)
	for {
		runs, err := fleet.Runs(ctx, catalog.Filter{})
		if err != nil {
			return err
		}
		if len(runs) == rounds+1 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d runs in the fleet catalog after a minute", len(runs), rounds+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// service makes the policy of one side: its own state directory and
// repository.
func service(ctx context.Context, dir, name, src, extra string) (*app.Service, error) {
	base := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Join(base, "repo"), 0o700); err != nil {
		return nil, err
	}
	if err := repo.GenerateKeyFile(filepath.Join(base, "key")); err != nil {
		return nil, err
	}
	pol := fmt.Sprintf(`%sstate_dir: %[2]s/state
repositories:
  - {name: primary, url: "file://%[2]s/repo", key_file: %[2]s/key}
assets:
  - {name: files, kind: files, schedule: '@hourly', paths: [%[3]s], repositories: [primary]}
`, extra, base, src)
	cfg := filepath.Join(base, "lifeboat.yaml")
	if err := os.WriteFile(cfg, []byte(pol), 0o600); err != nil {
		return nil, err
	}
	svc, err := app.Load(cfg, app.Options{Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, err
	}
	rp := &svc.Policy.Repositories[0]
	be, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return nil, err
	}
	defer be.Close()
	sec, err := app.SecretFor(rp)
	if err != nil {
		return nil, err
	}
	if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
		return nil, err
	}
	return svc, nil
}

// backup is one backup as a run records it: the backup, then its
// record; it returns the wall of both and of the record alone.
func backup(ctx context.Context, svc *app.Service) (time.Duration, time.Duration, error) {
	t0 := time.Now()
	res, err := svc.Backup(ctx, app.BackupRequest{Asset: "files"})
	if err != nil {
		return 0, 0, err
	}
	t1 := time.Now()
	if err := svc.RecordBackup(ctx, res, nil); err != nil {
		return 0, 0, err
	}
	return time.Since(t0), time.Since(t1), nil
}

func writeRandom(path string) error {
	b := make([]byte, 1<<20)
	rand.Read(b)
	return os.WriteFile(path, b, 0o600)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
