// Package pgdrill is what the kinds that drill into a throwaway PostgreSQL
// server share (a physical restore that replays WAL, a logical dump
// loaded with pg_restore): the server made in the drill's work directory
// and stopped whatever happens, pg_amcheck as the integrity check, and
// the validation queries run read-only on it.
package pgdrill

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// settings override what a restored configuration says about archiving,
// replication, extensions and TLS: a drill must never archive into the
// asset's repository, and the target starts without what the production
// host had around it. Without hot standby the server takes connections
// only once recovery is over and it is promoted. pgbin adds that it
// listens only on its private socket and logs to the drill's file.
func settings() map[string]string {
	return map[string]string{
		"archive_mode":             "off",
		"hot_standby":              "off",
		"max_wal_senders":          "0",
		"shared_preload_libraries": "",
		"ssl":                      "off",
	}
}

// RunAs picks the OS user the drill's servers run as (see pgbin.RunAs).
func RunAs(d asset.Drill, pgdata string) (*pgbin.User, error) {
	u, err := pgbin.RunAs(d.RunAs(), pgdata)
	if err != nil {
		return nil, fmt.Errorf("%w (the drill's --run-as names the OS user)", err)
	}
	return u, nil
}

// NewServer makes the private directories of a throwaway server in the
// drill's work directory, owned by as, and returns the server to be: its
// data directory is empty, and its programs and role are the caller's to
// set.
func NewServer(d asset.Drill, as *pgbin.User) (*pgbin.Server, error) {
	// The work directory is the run-as user's too, or it could not
	// reach its own directories below it.
	if err := as.Chown(d.WorkDir()); err != nil {
		return nil, err
	}
	var dirs [3]string
	for i, name := range []string{"data", "sock", "log"} {
		dirs[i] = filepath.Join(d.WorkDir(), name)
		if err := as.MkdirPrivate(dirs[i]); err != nil {
			return nil, fmt.Errorf("the drill's server: %w", err)
		}
	}
	return &pgbin.Server{DataDir: dirs[0], SocketDir: dirs[1], LogFile: filepath.Join(dirs[2], "postgresql.log"),
		OS: as, Settings: settings()}, nil
}

// Start starts srv, which the drill stops (immediately: it is thrown
// away, so nothing it holds needs a checkpoint) whatever happens.
func Start(ctx context.Context, d asset.Drill, srv *pgbin.Server) error {
	d.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.StopImmediate(ctx); err != nil {
			d.Log().Warn("drill: stop the throwaway server", "dir", srv.DataDir, "err", err)
		}
	})
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("start the drill's server: %w", err)
	}
	return nil
}

// FreshCluster initialises and starts an empty cluster of bin in the
// drill's work directory.
func FreshCluster(ctx context.Context, d asset.Drill, bin pgbin.Bin, as *pgbin.User) (*pgbin.Server, error) {
	srv, err := NewServer(d, as)
	if err != nil {
		return nil, err
	}
	srv.Bin = bin
	if err := srv.Init(ctx, pgbin.InitOptions{}); err != nil {
		return nil, fmt.Errorf("the drill's cluster: %w", err)
	}
	if err := Start(ctx, d, srv); err != nil {
		return nil, err
	}
	return srv, nil
}

// Integrity runs pg_amcheck on the target and records the outcome.
func Integrity(ctx context.Context, d asset.Drill, srv *pgbin.Server) {
	start := time.Now()
	jobs := d.Workers()
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	out, err := amcheck(ctx, srv, jobs)
	c := asset.IntegrityCheck{Name: "pg_amcheck (heap and B-tree indexes, all databases)", Passed: err == nil,
		Seconds: time.Since(start).Seconds()}
	if err != nil {
		c.Detail = err.Error()
	} else if out != "" {
		c.Detail = firstLines(out, 3)
	}
	d.Integrity(c)
}

// amcheck runs pg_amcheck over every database: the heap and the B-tree
// indexes, with jobs connections in parallel, installing the amcheck
// extension where it is missing (the target is thrown away, so the change
// is harmless). --heapallindexed is left out: it checks that every heap
// tuple is in each index, which took four times as long as the rest on the
// reference cluster (see docs/benchmarks.md), and a drill's RTO includes
// its checks.
func amcheck(ctx context.Context, srv *pgbin.Server, jobs int) (string, error) {
	if _, err := os.Stat(srv.Bin.Path("pg_amcheck")); err != nil {
		return "", fmt.Errorf("pg_amcheck not found in %s: install the PostgreSQL client programs of the same version", srv.Bin.Dir)
	}
	args := append([]string{"--all", "--install-missing", "--no-password", "--jobs", strconv.Itoa(max(jobs, 1))}, srv.ClientArgs()...)
	out, err := srv.Command(ctx, "pg_amcheck", args...).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		if text == "" {
			text = err.Error()
		}
		return text, fmt.Errorf("pg_amcheck found problems: %s", firstLines(text, 3))
	}
	return text, nil
}

// firstLines joins the first n lines of s with " | ".
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, " | ")
}

// Querier runs the checks on a throwaway server, each in a read-only
// transaction, through checkquery as the backup recorded them.
type Querier struct{ Server *pgbin.Server }

func (q Querier) QueryValue(ctx context.Context, db, sql string) (value string, null bool, err error) {
	err = q.Server.ReadOnly(ctx, db, func(tx pgx.Tx) error {
		var err error
		value, null, err = checkquery.Postgres(ctx, tx, sql)
		return err
	})
	return value, null, err
}
