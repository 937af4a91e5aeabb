// Command lbwalpush archives every WAL file in a directory into each
// repository of an asset, as `lifeboat wal-push` would one at a time
// (postgres.PushWAL, the same code), without a process per file.
// bench/info.sh uses it to fill a repository with a month of WAL in
// minutes: the server archives into a staging directory (archive_library
// basic_archive) and this pushes the staged files, removing each once it
// is in every repository.
//
//	lbwalpush -c POLICY -asset NAME [-workers N] DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"sync"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

func main() {
	policyPath := flag.String("c", "", "policy file")
	assetName := flag.String("asset", "", "asset whose repositories receive the WAL")
	workers := flag.Int("workers", 2, "files pushed at once")
	flag.Parse()
	if *policyPath == "" || *assetName == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: lbwalpush -c POLICY -asset NAME [-workers N] DIR")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := run(ctx, *policyPath, *assetName, flag.Arg(0), *workers)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lbwalpush: %v (%d files pushed)\n", err, n)
		os.Exit(1)
	}
	fmt.Printf("pushed %d files\n", n)
}

func run(ctx context.Context, policyPath, assetName, dir string, workers int) (int, error) {
	p, err := app.LoadPolicy(policyPath, app.Kinds())
	if err != nil {
		return 0, err
	}
	a, err := p.Asset(assetName)
	if err != nil {
		return 0, err
	}
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return 0, err
	}
	var repos []*repo.Repository
	for _, rp := range rps {
		r, err := app.OpenRepository(ctx, rp, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return 0, err
		}
		defer r.Close()
		repos = append(repos, r)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var names []string
	for _, e := range entries {
		// basic_archive writes a temporary file first and renames it.
		if e.Type().IsRegular() && !isTemp(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)

	work := make(chan string)
	var mu sync.Mutex
	var errs []error
	pushed := 0
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for name := range work {
				path := filepath.Join(dir, name)
				err := pushAll(ctx, repos, assetName, path)
				if err == nil {
					err = os.Remove(path)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					pushed++
				}
				mu.Unlock()
			}
		})
	}
	for _, name := range names {
		if ctx.Err() != nil {
			break
		}
		work <- name
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return pushed, errors.Join(errs...)
}

// pushAll archives one file into every repository.
func pushAll(ctx context.Context, repos []*repo.Repository, asset, path string) error {
	for _, r := range repos {
		if _, err := postgres.PushWAL(ctx, r, asset, path, nil); err != nil {
			return fmt.Errorf("%s: %w", r.Location(), err)
		}
	}
	return nil
}

// isTemp reports whether name is basic_archive's temporary file
// (archtemp.NAME.PID.TIME), not yet renamed into place.
func isTemp(name string) bool { return len(name) > 9 && name[:9] == "archtemp." }
