// Package pgtest holds test helpers only: it starts throwaway PostgreSQL clusters from the real
// server binaries and runs test binaries as an unprivileged user when the tests are run as root.
// Nothing outside _test.go files may import it.
package pgtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

const (
	envPGBin         = "LIFEBOAT_PG_BIN"
	debianPGBin      = "/usr/lib/postgresql/15/bin"
	superuser        = "postgres"
	startTimeoutSecs = "300"
	logTailLines     = 60
)

// PGBin returns the PostgreSQL server bin directory: $LIFEBOAT_PG_BIN, else /usr/lib/postgresql/15/bin
// when it has initdb, else `pg_config --bindir`. Without a server the test is skipped, unless CI is
// set or LIFEBOAT_TEST_DISALLOW_SKIP=1: there a skip would hide untested code, so the test fails.
func PGBin(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(envPGBin); dir != "" {
		if !hasInitdb(dir) {
			t.Fatalf("pgtest: %s=%s has no executable initdb", envPGBin, dir)
		}
		return dir
	}
	if hasInitdb(debianPGBin) {
		return debianPGBin
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasInitdb(dir) {
			return dir
		}
	}
	reason := fmt.Sprintf("PostgreSQL server binaries not found (set %s, install postgresql-15, or run scripts/install-test-deps.sh)", envPGBin)
	testenv.SkipOrFail(t, "pgtest", reason)
	return ""
}

func hasInitdb(dir string) bool { return testenv.IsExecutable(filepath.Join(dir, "initdb")) }

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

// Cluster is a PostgreSQL cluster owned by one test. It listens on a Unix socket only.
type Cluster struct {
	DataDir   string
	SocketDir string
	Port      int
	BinDir    string
	// LogFile receives the server's stderr; its tail is logged when the test fails.
	LogFile string

	serverArgs []string // postgres command-line options, which override every configuration file
	pidFile    string   // entry in the parent's PID directory while the server runs
}

// Start creates a cluster with initdb (UTF8, trust authentication, superuser "postgres") in a test
// temporary directory and starts it on a Unix socket. fsync stays on: tests check durability. The
// server is stopped (immediate mode) when the test ends.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	requireNotRoot(t)
	bin := PGBin(t)
	base := t.TempDir()
	c := &Cluster{
		DataDir: filepath.Join(base, "data"),
		BinDir:  bin,
		LogFile: filepath.Join(base, "server.log"),
	}
	c.SocketDir = socketDir(t)
	c.Port = freePort(t)

	args := []string{"-D", c.DataDir, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C",
		// initdb's fsync only protects against an OS crash while the test runs; the server keeps fsync on.
		"--no-sync"}
	if opts.Checksums {
		args = append(args, "--data-checksums")
	}
	if out, err := c.command("initdb", args...).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb %s: %v\n%s", c.DataDir, err, out)
	}

	conf := map[string]string{
		"listen_addresses":        "",
		"port":                    strconv.Itoa(c.Port),
		"unix_socket_directories": c.SocketDir,
		"shared_buffers":          "32MB",
		"logging_collector":       "off",
		"log_line_prefix":         "%m [%p] ",
	}
	var extra strings.Builder
	extra.WriteString("\n# added by pgtest\n")
	writeConf(t, &extra, conf)
	writeConf(t, &extra, opts.Conf) // after the defaults, so the test's values win
	f, err := os.OpenFile(filepath.Join(c.DataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("pgtest: open postgresql.conf: %v", err)
	}
	if _, err := f.WriteString(extra.String()); err != nil {
		f.Close()
		t.Fatalf("pgtest: write postgresql.conf: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("pgtest: close postgresql.conf: %v", err)
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
	requireNotRoot(t)
	c := &Cluster{
		DataDir: dataDir,
		BinDir:  PGBin(t),
		LogFile: filepath.Join(t.TempDir(), "server.log"),
	}
	c.SocketDir = socketDir(t)
	c.Port = freePort(t)
	c.serverArgs = []string{"-p", strconv.Itoa(c.Port), "-k", c.SocketDir, "-c", "listen_addresses="}
	keys := sortedKeys(conf)
	for _, k := range keys {
		checkConfName(t, k)
		c.serverArgs = append(c.serverArgs, "-c", k+"="+rawConfValue(conf[k]))
	}
	c.registerCleanup(t)
	c.Start(t)
	return c
}

// Start starts the server of a cluster created with NoStart or stopped by the test, and waits
// until it accepts connections (after crash recovery, or when a standby is consistent).
func (c *Cluster) Start(t testing.TB) {
	t.Helper()
	args := []string{"-D", c.DataDir, "-l", c.LogFile, "-w", "-t", startTimeoutSecs}
	if len(c.serverArgs) > 0 {
		// pg_ctl hands -o to /bin/sh, so every argument is shell-quoted.
		quoted := make([]string, len(c.serverArgs))
		for i, a := range c.serverArgs {
			quoted[i] = shellQuote(a)
		}
		args = append(args, "-o", strings.Join(quoted, " "))
	}
	args = append(args, "start")
	if out, err := c.command("pg_ctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: pg_ctl start %s: %v\n%s\n%s", c.DataDir, err, out, c.logTail())
	}
	c.track()
}

// Stop shuts the server down in fast mode (a clean shutdown with a checkpoint).
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	c.stop(t, "fast")
}

// StopImmediate shuts the server down without a checkpoint, like a crash: the next start runs
// crash recovery.
func (c *Cluster) StopImmediate(t testing.TB) {
	t.Helper()
	c.stop(t, "immediate")
}

// Restart stops the server in fast mode and starts it again with the same settings.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

func (c *Cluster) stop(t testing.TB, mode string) {
	t.Helper()
	out, err := c.command("pg_ctl", "-D", c.DataDir, "-m", mode, "-w", "-t", startTimeoutSecs, "stop").CombinedOutput()
	if err != nil {
		t.Fatalf("pgtest: pg_ctl stop -m %s %s: %v\n%s\n%s", mode, c.DataDir, err, out, c.logTail())
	}
	c.untrack()
}

// running asks pg_ctl, not our own bookkeeping, because the code under test may stop or start
// the server itself.
func (c *Cluster) running() bool {
	return c.command("pg_ctl", "-D", c.DataDir, "status").Run() == nil
}

// registerCleanup stops the server when the test ends and, when the test failed, logs the tail of
// the server log, which usually says why.
func (c *Cluster) registerCleanup(t testing.TB) {
	t.Cleanup(func() {
		if c.running() {
			out, err := c.command("pg_ctl", "-D", c.DataDir, "-m", "immediate", "-w", "-t", startTimeoutSecs, "stop").CombinedOutput()
			if err != nil {
				t.Errorf("pgtest: stop server in %s at cleanup: %v\n%s", c.DataDir, err, out)
			}
		}
		c.untrack()
		if t.Failed() {
			t.Logf("pgtest: server log %s:\n%s", c.LogFile, c.logTail())
		}
	})
}

// DSN returns a libpq key/value connection string for database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", c.SocketDir, c.Port, superuser, db)
}

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
	cmd := c.command("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
		"-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", superuser, "-d", db)
	cmd.Stdin = strings.NewReader(sql)
	var stdout, stderr bytes.Buffer
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
	deadline := time.Now().Add(timeout)
	var last string
	for {
		out, err := c.psql("postgres", "select pg_is_in_recovery()")
		switch {
		case err == nil && out == "f":
			return
		case err != nil:
			last = err.Error()
		default:
			last = "pg_is_in_recovery() = " + out
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: server in %s still in recovery after %v (last: %s)\n%s", c.DataDir, timeout, last, c.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// PGBench runs pgbench from BinDir against this cluster with the connection options added, and
// returns its combined output. The database name, if any, goes last in args.
func (c *Cluster) PGBench(t testing.TB, args ...string) string {
	t.Helper()
	full := append([]string{"-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", superuser}, args...)
	out, err := c.command("pgbench", full...).CombinedOutput()
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

// command runs a PostgreSQL binary from BinDir with PG* variables removed from the environment, so
// a developer's PGHOST or PGDATA cannot redirect the helpers to another server.
func (c *Cluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// track records the postmaster PID for the root parent of RunMain (see reapServers).
func (c *Cluster) track() {
	dir := os.Getenv(envPIDDir)
	if dir == "" {
		return
	}
	b, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	pid := strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	c.untrack()
	c.pidFile = filepath.Join(dir, pid+".pid")
	_ = os.WriteFile(c.pidFile, []byte(pid+"\n"+c.DataDir+"\n"), 0o600)
}

func (c *Cluster) untrack() {
	if c.pidFile != "" {
		_ = os.Remove(c.pidFile)
		c.pidFile = ""
	}
}

// logTail returns the last lines of the server log.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(c.LogFile)
	if err != nil {
		return fmt.Sprintf("(server log %s: %v)", c.LogFile, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return "--- server log tail ---\n" + strings.Join(lines, "\n")
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

// freePort picks an unused TCP port. The server listens on a Unix socket only, but the port still
// names the socket file and would collide if a test enables TCP.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func checkConfName(t testing.TB, name string) {
	t.Helper()
	valid := name != "" && !(name[0] >= '0' && name[0] <= '9')
	for _, r := range name {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			valid = false
		}
	}
	if !valid {
		t.Fatalf("pgtest: invalid configuration parameter name %q", name)
	}
}

func writeConf(t testing.TB, b *strings.Builder, conf map[string]string) {
	t.Helper()
	for _, k := range sortedKeys(conf) {
		checkConfName(t, k)
		v := rawConfValue(conf[k])
		if strings.ContainsAny(v, "\r\n") {
			t.Fatalf("pgtest: configuration value of %s contains a line break: %q", k, v)
		}
		fmt.Fprintf(b, "%s = %s\n", k, quoteConf(v))
	}
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

// quoteConf quotes s for postgresql.conf, where a backslash starts an escape sequence.
func quoteConf(s string) string {
	s = strings.ReplaceAll(s, "\\", "\\\\")
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings is on).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
