// Package pgdrill is what the kinds that drill into a throwaway PostgreSQL
// server share (a physical restore that replays WAL, a logical dump
// loaded with pg_restore): the server made in the drill's work directory
// and stopped whatever happens, pg_amcheck as the integrity check, and
// the validation queries run read-only on it.
package pgdrill

import (
	"context"
	"fmt"
	"log/slog"
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
// replication, extensions, TLS and the commands it would run: a drill
// must never archive into the asset's repository, nor run what the
// snapshot's configuration names on the drill host (a standby's
// archive_cleanup_command would clean its archive from here), and the
// target starts without what the production host had around it. Given on
// the command line, they win over every configuration file, whatever a
// restored postgresql.auto.conf or an include says. Without hot standby
// the server takes connections only once recovery is over and it is
// promoted. pgbin adds that it listens only on its private socket and
// logs to the drill's file. restore_command is the drill's own (written
// at restore).
func settings() map[string]string {
	return map[string]string{
		"archive_mode":              "off",
		"archive_command":           "",
		"archive_library":           "",
		"archive_cleanup_command":   "",
		"recovery_end_command":      "",
		"hot_standby":               "off",
		"max_wal_senders":           "0",
		"primary_conninfo":          "",
		"shared_preload_libraries":  "",
		"session_preload_libraries": "",
		"local_preload_libraries":   "",
		"ssl":                       "off",
		"ssl_passphrase_command":    "",
	}
}

// since is the major version a setting of settings first exists in; a
// server of an older one refuses to start on a name it does not know.
var since = map[string]int{
	"archive_library":         15,
	"archive_cleanup_command": 12, // in recovery.conf before
	"recovery_end_command":    12,
	"primary_conninfo":        12,
}

// Host is what a throwaway server needs of the work it serves: a drill
// (asset.Drill) or a scratch restore (Scratch).
type Host interface {
	// WorkDir is an empty private directory, removed afterwards.
	WorkDir() string
	// RunAs is the OS user servers run as under root ("": the data
	// directory's owner, else postgres).
	RunAs() string
	// Cleanup registers a teardown step, run whatever happens.
	Cleanup(func())
	Log() *slog.Logger
}

var _ Host = asset.Drill(nil)

// RunAs picks the OS user the drill's servers run as (see pgbin.RunAs).
func RunAs(d Host, pgdata string) (*pgbin.User, error) {
	u, err := pgbin.RunAs(d.RunAs(), pgdata)
	if err != nil {
		return nil, fmt.Errorf("%w (the drill's --run-as names the OS user)", err)
	}
	return u, nil
}

// NewServer makes the private directories of a throwaway server in the
// drill's work directory and returns the server to be: its data directory
// is empty, and its programs and role are the caller's to set. The data
// directory and the work directory stay the current user's until
// HandOver: a restore run as root writes into them first, and must not
// write into a directory the run-as user already holds (that user could
// swap a link in under the restore).
func NewServer(d Host, as *pgbin.User) (*pgbin.Server, error) {
	var dirs [3]string
	for i, name := range []string{"data", "sock", "log"} {
		dirs[i] = filepath.Join(d.WorkDir(), name)
		mk := as.MkdirPrivate
		if name == "data" {
			mk = func(p string) error { return os.Mkdir(p, 0o700) }
		}
		if err := mk(dirs[i]); err != nil {
			return nil, fmt.Errorf("the drill's server: %w", err)
		}
	}
	return &pgbin.Server{DataDir: dirs[0], SocketDir: dirs[1], LogFile: filepath.Join(dirs[2], "postgresql.log"),
		OS: as, Settings: settings()}, nil
}

// HandOver gives the data directory and the work directory to the run-as
// user, once everything root writes into them is written: the server
// runs as that user, and reaches its directories through the work
// directory.
func HandOver(d Host, srv *pgbin.Server, as *pgbin.User) error {
	if err := as.Chown(srv.DataDir, d.WorkDir()); err != nil {
		return fmt.Errorf("the drill's server: %w", err)
	}
	return nil
}

// Start starts srv, which the drill stops (immediately: it is thrown
// away, so nothing it holds needs a checkpoint) whatever happens.
func Start(ctx context.Context, d Host, srv *pgbin.Server) error {
	d.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.StopImmediate(ctx); err != nil {
			d.Log().Warn("drill: stop the throwaway server", "dir", srv.DataDir, "err", err)
		}
	})
	for k, v := range since {
		if srv.Bin.Major != 0 && srv.Bin.Major < v {
			delete(srv.Settings, k)
		}
	}
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("start the drill's server: %w", err)
	}
	return nil
}

// FreshCluster initialises and starts an empty cluster of bin in the
// drill's work directory.
func FreshCluster(ctx context.Context, d Host, bin pgbin.Bin, as *pgbin.User) (*pgbin.Server, error) {
	srv, err := NewServer(d, as)
	if err != nil {
		return nil, err
	}
	if err := HandOver(d, srv, as); err != nil {
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
