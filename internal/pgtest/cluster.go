// Package pgtest holds test helpers only: it starts throwaway PostgreSQL clusters from the real
// server binaries (through internal/pgbin, as drills do) and runs test binaries as an unprivileged
// user when the tests are run as root. Nothing outside _test.go files may import it.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const (
	superuser    = pgbin.DefaultUser
	startTimeout = 300 * time.Second
	logTailLines = 60
)

// PGBin returns the PostgreSQL server bin directory, found by pgbin.Find's rule for any major
// version: $LIFEBOAT_PG_BIN, else the newest /usr/lib/postgresql/*/bin, else the directory of
// postgres on PATH, else `pg_config --bindir`. Without a server the test is skipped, unless CI is
// set or LIFEBOAT_TEST_DISALLOW_SKIP=1: there a skip would hide untested code, so the test fails.
func PGBin(t testing.TB) string {
	t.Helper()
	bin, err := findBin()
	if errors.Is(err, pgbin.ErrNotFound) {
		testenv.SkipOrFail(t, "pgtest", err.Error()+" (or run scripts/install-test-deps.sh)")
		return ""
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return bin.Dir
}

// found caches pgbin.Find by $LIFEBOAT_PG_BIN, the one input a test changes: a lookup runs
// pg_config and postgres --version, some 80 ms of CPU, and every cluster asks.
var found struct {
	mu    sync.Mutex
	byEnv map[string]foundBin
}

type foundBin struct {
	bin pgbin.Bin
	err error
}

func findBin() (pgbin.Bin, error) {
	env := os.Getenv(pgbin.EnvBin)
	found.mu.Lock()
	defer found.mu.Unlock()
	if f, ok := found.byEnv[env]; ok {
		return f.bin, f.err
	}
	bin, err := pgbin.Find(context.Background(), 0)
	if err != nil && !errors.Is(err, pgbin.ErrNotFound) {
		return bin, err // perhaps passing (a timeout under load): the next test asks again
	}
	if found.byEnv == nil {
		found.byEnv = map[string]foundBin{}
	}
	found.byEnv[env] = foundBin{bin, err}
	return bin, err
}

// Options configures Start.
type Options struct {
	// Checksums enables data page checksums (initdb --data-checksums).
	Checksums bool
	// Conf holds extra postgresql.conf settings, for example "archive_mode": "on",
	// "archive_command": "cp %p /dir/%f". Values are raw: they are quoted when written, so pass them
	// unquoted (a value already wrapped in single quotes is taken as quoted).
	Conf map[string]string
	// NoStart runs initdb only; call Cluster.Start to start the server.
	NoStart bool
}

// Cluster is a PostgreSQL cluster owned by one test. It listens on a Unix socket only. Its fields
// describe it and are not to be changed.
type Cluster struct {
	DataDir   string
	SocketDir string
	Port      int
	BinDir    string
	// LogFile receives the server's stderr; its tail is logged when the test fails.
	LogFile string

	srv     *pgbin.Server
	pidFile string // entry in the parent's PID directory while the server runs
}

// newCluster describes a cluster in dataDir, logging to logFile, on a new socket directory and
// port, with settings given on the server's command line.
func newCluster(t testing.TB, dataDir, logFile string, settings map[string]string) *Cluster {
	t.Helper()
	requireNotRoot(t)
	port, err := pgbin.FreePort()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	srv := &pgbin.Server{Bin: pgbin.Bin{Dir: PGBin(t)}, DataDir: dataDir, SocketDir: socketDir(t), Port: port,
		LogFile: logFile, User: superuser, Settings: settings, Env: serverEnv()}
	return &Cluster{DataDir: srv.DataDir, SocketDir: srv.SocketDir, Port: srv.Port, BinDir: srv.Bin.Dir,
		LogFile: srv.LogFile, srv: srv}
}

// ServerMarker is in the environment of every server pgtest starts, so
// that a test scanning /proc can tell them from the servers Lifeboat
// starts.
const ServerMarker = "PGTEST_CLUSTER=1"

// serverEnv is a test server's environment: the test process's (but its
// PG* variables), as the environment the operator gives a production
// server reaches its archive_command, which the tests point at lifeboat
// wal-push with the policy's ${NAME}s set here. pgbin gives the servers
// it starts only an allow-listed environment, which stands in for none.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return append(env, ServerMarker)
}

// Start creates a cluster as initdb does (UTF8, trust authentication, superuser "postgres") in a
// test temporary directory and starts it on a Unix socket. Under RunMain the data directory is a
// copy of a template initdb made once per test process, with a system identifier of its own (see
// template.go). fsync stays on: tests check durability. The server is stopped (immediate mode)
// when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	base := t.TempDir()
	c := newCluster(t, filepath.Join(base, "data"), filepath.Join(base, "server.log"), nil)
	conf := map[string]string{
		"shared_buffers":    "32MB",
		"logging_collector": "off",
		"log_line_prefix":   "%m [%p] ",
		// Hint-bit changes WAL-logged as with data checksums, so that
		// backup --check-blocks (LIFEBOAT_CHECK_BLOCKS) can prove every
		// incremental's WAL-derived block set exactly.
		"wal_log_hints": "on",
	}
	for k, v := range opts.Conf { // the test's values win over the defaults
		conf[k] = rawConfValue(v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// initdb's fsync only protects against an OS crash while the test runs; the server keeps fsync on.
	if err := initCluster(ctx, c.srv, pgbin.InitOptions{Superuser: superuser, Checksums: opts.Checksums, Conf: conf}); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c.registerCleanup(t)
	if !opts.NoStart {
		c.Start(t)
	}
	return c
}

// Open starts an existing data directory, for example one restored by a backup tool, on a new port
// and socket. The port, socket directory, listen_addresses and conf are given on the server's
// command line, so they override postgresql.conf and postgresql.auto.conf copied with the data.
// conf values are raw, as in Options.Conf. The server is stopped when the test ends.
func Open(t testing.TB, dataDir string, conf map[string]string) *Cluster {
	t.Helper()
	settings := maps.Clone(conf)
	for k, v := range settings {
		settings[k] = rawConfValue(v)
	}
	c := newCluster(t, dataDir, filepath.Join(t.TempDir(), "server.log"), settings)
	c.registerCleanup(t)
	c.Start(t)
	return c
}

// Start starts the server of a cluster created with NoStart or stopped by the test, and waits
// until it accepts connections (after crash recovery, or when a standby is consistent).
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c.srv.Env = serverEnv() // as the test has set it by now
	if err := c.srv.Start(ctx); err != nil {
		t.Fatalf("pgtest: %v\n%s", err, c.logTail())
	}
	c.track()
}

// Stop shuts the server down in fast mode (a clean shutdown with a checkpoint).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.srv.Stop(ctx); err != nil {
		t.Fatalf("pgtest: %v\n%s", err, c.logTail())
	}
	c.untrack()
}

// StopImmediate shuts the server down without a checkpoint, like a crash: the next start runs
// crash recovery.
func (c *Cluster) StopImmediate(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := c.srv.StopImmediate(ctx); err != nil {
		t.Fatalf("pgtest: %v\n%s", err, c.logTail())
	}
	c.untrack()
}

// Restart stops the server in fast mode and starts it again with the same settings.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// running reads the postmaster's PID file, not our own bookkeeping, because the code under test
// may stop or start the server itself.
func (c *Cluster) running() bool { return c.srv.Running() }

// registerCleanup stops the server when the test ends and, when the test failed, logs the tail of
// the server log, which usually says why.
func (c *Cluster) registerCleanup(t testing.TB) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		defer cancel()
		if err := c.srv.StopImmediate(ctx); err != nil {
			t.Errorf("pgtest: stop server at cleanup: %v", err)
		}
		c.untrack()
		if t.Failed() {
			t.Logf("pgtest: server log %s:\n%s", c.LogFile, c.logTail())
		}
	})
}

// DSN returns a libpq key/value connection string for database db.
func (c *Cluster) DSN(db string) string { return c.srv.DSN(db) }

// Psql runs sql (one or more statements) with psql in database db, stopping at the first error,
// and returns the unaligned, tuples-only output with surrounding space trimmed.
func (c *Cluster) Psql(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := c.psql(db, sql)
	if err != nil {
		t.Fatalf("pgtest: psql in %q: %v\nSQL: %s", db, err, sql)
	}
	return out
}

func (c *Cluster) psql(db, sql string) (string, error) {
	args := append([]string{"-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"}, c.srv.ClientArgs()...)
	cmd := c.srv.Command(context.Background(), "psql", append(args, "-d", db)...)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w\nstderr: %s\nstdout: %s", err, strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// WaitRecoveryDone waits until the server has left recovery (pg_is_in_recovery() is false), for
// example after a point-in-time restore that ends with promotion.
func (c *Cluster) WaitRecoveryDone(t testing.TB, timeout time.Duration) {
	t.Helper()
	if last, ok := c.pollQuery("postgres", "select pg_is_in_recovery()", timeout, func(v string) bool { return v == "f" }); !ok {
		t.Fatalf("pgtest: server in %s still in recovery after %v (last: %s)\n%s", c.DataDir, timeout, last, c.logTail())
	}
}

// WaitArchived waits until the archiver reports seg, or a later segment, archived
// (pg_stat_archiver.last_archived_wal).
func (c *Cluster) WaitArchived(t testing.TB, seg string, timeout time.Duration) {
	t.Helper()
	q := "select coalesce(last_archived_wal, '') from pg_stat_archiver"
	if last, ok := c.pollQuery("postgres", q, timeout, func(v string) bool { return v >= seg }); !ok {
		t.Fatalf("pgtest: segment %s not archived within %v (last archived: %s): %s", seg, timeout, last,
			c.Psql(t, "postgres", "select * from pg_stat_archiver"))
	}
}

// pollInterval is how often pollQuery asks. A query on an open connection costs the server
// microseconds, so the wait ends close to the moment the condition holds.
const pollInterval = 20 * time.Millisecond

// pollQuery runs query, whose first column of the first row it reads as text, in database db
// until done accepts the value or timeout passes. It keeps one connection, opening another when
// that fails (a server still starting, or restarted by the test). It returns the last value, or
// the last error, and whether done accepted it.
func (c *Cluster) pollQuery(db, query string, timeout time.Duration, done func(string) bool) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	last := "no answer yet"
	for {
		var err error
		if conn == nil {
			conn, err = c.srv.Connect(ctx, db)
		}
		if err == nil {
			var v *string
			if err = conn.QueryRow(ctx, query, pgx.QueryExecModeSimpleProtocol).Scan(&v); err == nil {
				last = "NULL"
				if v != nil {
					last = *v
				}
				if done(last) {
					return last, true
				}
			} else {
				conn.Close(context.Background())
				conn = nil
			}
		}
		if err != nil && ctx.Err() == nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return last, false
		case <-time.After(pollInterval):
		}
	}
}

// PGBench runs pgbench from BinDir against this cluster with the connection options added, and
// returns its combined output. The database name, if any, goes last in args.
func (c *Cluster) PGBench(t testing.TB, args ...string) string {
	t.Helper()
	full := append(c.srv.ClientArgs(), args...)
	out, err := c.srv.Command(context.Background(), "pgbench", full...).CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TableChecksums returns, for every user table of db (as schema.table, quoted where needed), the
// md5 of its rows in a deterministic order followed by ":" and the row count. Comparing the maps of
// a source and a restored cluster proves the data came back.
func (c *Cluster) TableChecksums(t testing.TB, db string) map[string]string {
	t.Helper()
	list := c.Psql(t, db, `select format('%I.%I', n.nspname, c.relname)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\_toast%' and n.nspname not like 'pg\_temp\_%'
order by 1`)
	sums := map[string]string{}
	if list == "" {
		return sums
	}
	var q strings.Builder
	tables := strings.Split(list, "\n")
	for _, tbl := range tables {
		// Hashing each row first keeps the aggregate small for big tables; the "C" collation makes the
		// order independent of the database's locale.
		fmt.Fprintf(&q, "select %s || '|' || coalesce(md5(string_agg(md5(t::text), '' order by t::text collate \"C\")), md5('')) || ':' || count(*) from %s t;\n",
			quoteLiteral(tbl), tbl)
	}
	out := c.Psql(t, db, q.String())
	for _, line := range strings.Split(out, "\n") {
		i := strings.LastIndexByte(line, '|')
		if i < 0 {
			t.Fatalf("pgtest: unexpected checksum line %q", line)
		}
		sums[line[:i]] = line[i+1:]
	}
	if len(sums) != len(tables) {
		t.Fatalf("pgtest: got %d checksums for %d tables:\n%s", len(sums), len(tables), out)
	}
	return sums
}

// track records the postmaster PID for the root parent of RunMain (see reapServers).
func (c *Cluster) track() {
	dir := os.Getenv(envPIDDir)
	if dir == "" {
		return
	}
	pid, ok := c.srv.PID()
	if !ok {
		return
	}
	c.untrack()
	c.pidFile = filepath.Join(dir, fmt.Sprintf("%d.pid", pid))
	_ = os.WriteFile(c.pidFile, []byte(fmt.Sprintf("%d\n%s\n", pid, c.DataDir)), 0o600)
}

func (c *Cluster) untrack() {
	if c.pidFile != "" {
		_ = os.Remove(c.pidFile)
		c.pidFile = ""
	}
}

// logTail returns the last lines of the server log.
func (c *Cluster) logTail() string {
	return "--- server log tail ---\n" + c.srv.LogTail(logTailLines)
}

func requireNotRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		t.Fatalf("pgtest: PostgreSQL refuses to run as root; call pgtest.RunMain from TestMain so the tests run as %s", TestUser)
	}
}

// socketDir makes a short directory for the server socket: a Unix socket path is limited to about
// 107 bytes, which a t.TempDir path with a long test name can exceed.
func socketDir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "pgs")
	if err != nil {
		t.Fatalf("pgtest: create socket dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// rawConfValue undoes configuration-file quoting when the caller already quoted the value.
func rawConfValue(v string) string {
	if len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
		return v
	}
	inner := v[1 : len(v)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		switch {
		case inner[i] == '\\' && i+1 < len(inner):
			i++
		case inner[i] == '\'' && i+1 < len(inner) && inner[i+1] == '\'':
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String()
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings is on).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
