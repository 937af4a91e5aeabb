package pgbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// testUser is the unprivileged OS user the server runs as when the tests
// run as root; internal/pgtest runs the other packages' tests as the same.
const testUser = "lifeboat-test"

// testServer describes a server in a fresh directory, run as testUser when
// the test runs as root (the way a drill runs it), as the current user
// otherwise. It skips or fails (in CI) without PostgreSQL.
func testServer(t *testing.T) *Server {
	t.Helper()
	ctx := context.Background()
	bin, err := Find(ctx, 0)
	if errors.Is(err, ErrNotFound) {
		testenv.SkipOrFail(t, "pgbin", err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	var u *User
	if os.Geteuid() == 0 {
		if u, err = EnsureUser(ctx, testUser, "/nonexistent", "lifeboat tests (PostgreSQL refuses root)"); err != nil {
			t.Fatal(err)
		}
	}
	// Not t.TempDir: its parent is private to root, and the socket path
	// must stay short.
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "pgbin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := u.Chown(dir); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"sock", "log"} {
		if err := u.MkdirPrivate(filepath.Join(dir, d)); err != nil {
			t.Fatal(err)
		}
	}
	s := &Server{Bin: bin, DataDir: filepath.Join(dir, "data"), SocketDir: filepath.Join(dir, "sock"),
		LogFile: filepath.Join(dir, "log", "postgresql.log"), OS: u}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.StopImmediate(ctx); err != nil {
			t.Errorf("stop at cleanup: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.LogTail(40))
		}
	})
	return s
}

func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	s := testServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	name := `it's "a b" \x`
	s.Settings = map[string]string{"work_mem": "7MB", "cluster_name": name}
	if err := s.Init(ctx, InitOptions{Checksums: true, Conf: map[string]string{"shared_buffers": "32MB", "work_mem": "5MB"}}); err != nil {
		t.Fatal(err)
	}
	if s.Port == 0 || s.User != DefaultUser {
		t.Fatalf("after Init: port %d, user %q", s.Port, s.User)
	}
	if s.Running() {
		t.Fatal("running before Start")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid, ok := s.PID()
	if !ok || !s.Running() {
		t.Fatal("not running after Start")
	}
	if s.OS != nil {
		var st syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil || int(st.Uid) != s.OS.UID {
			t.Errorf("postmaster %d runs as uid %d (%v), want %s's %d", pid, st.Uid, err, s.OS.Name, s.OS.UID)
		}
	}

	for query, want := range map[string]string{
		"select 1":                     "1",
		"select true":                  "t",
		"select 1.50::numeric":         "1.50",
		"select current_user":          "postgres",
		"show work_mem":                "7MB", // the command line wins over postgresql.conf
		"show shared_buffers":          "32MB",
		"show cluster_name":            name,
		"show data_checksums":          "on",
		"show listen_addresses":        "",
		"show unix_socket_directories": s.SocketDir,
		"show port":                    fmt.Sprint(s.Port),
		"show fsync":                   "on",
		"show log_timezone":            "UTC",
		"show server_encoding":         "UTF8",
		"select datcollate from pg_database where datname = current_database()": "C",
		"show transaction_read_only": "on",
	} {
		got, null, err := s.QueryValue(ctx, "postgres", query)
		if err != nil || null || got != want {
			t.Errorf("%s = %q (null %v, %v), want %q", query, got, null, err, want)
		}
	}
	if _, null, err := s.QueryValue(ctx, "postgres", "select null"); err != nil || !null {
		t.Errorf("select null: null %v, %v", null, err)
	}
	if _, _, err := s.QueryValue(ctx, "postgres", "select 1 where false"); err == nil {
		t.Error("a query without a row returned a value")
	}
	err := s.ReadOnly(ctx, "postgres", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "create table t (x int)")
		return err
	})
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "25006" { // read_only_sql_transaction
		t.Errorf("write in ReadOnly: %v, want SQLSTATE 25006", err)
	}

	db := `app "b"`
	for range 2 { // the second time it exists
		if err := s.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	if got, _, err := s.QueryValue(ctx, db, "select current_database()"); err != nil || got != db {
		t.Errorf("current_database() = %q, %v", got, err)
	}
	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		t.Fatalf("connect with DSN %q: %v", s.DSN(db), err)
	}
	conn.Close(ctx)
	out, err := s.Command(ctx, "psql", append(s.ClientArgs(), "-X", "-At", "-d", "postgres", "-c", "select 41 + 1")...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "42" {
		t.Errorf("psql through Command: %q, %v", out, err)
	}

	// A clean stop, a start, a crash and crash recovery.
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("running after Stop")
	}
	if err := s.Stop(ctx); err != nil {
		t.Errorf("Stop of a stopped server: %v", err)
	}
	if _, ok := LogTime(s.LogFile, "database system is ready to accept connections"); !ok {
		t.Error("LogTime finds no ready line in the server's own log")
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.StopImmediate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := LogTime(s.LogFile, "database system was not properly shut down"); !ok {
		t.Error("no crash recovery after StopImmediate")
	}
}

func TestServerStartFailures(t *testing.T) {
	t.Parallel()
	s := testServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.Init(ctx, InitOptions{}); err != nil {
		t.Fatal(err)
	}

	// A server that dies at start is reported at once, with its log's
	// reason, not after a timeout.
	s.Settings = map[string]string{"shared_buffers": "lots"}
	began := time.Now()
	err := s.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "stopped before taking connections") ||
		!strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Fatalf("start with a bad setting: %v", err)
	}
	if d := time.Since(began); d > 20*time.Second {
		t.Errorf("the failed start took %v", d)
	}
	t.Logf("bad setting: %v", err)
	s.Settings = map[string]string{"bad name": "x"}
	if err := s.Start(ctx); err == nil || !strings.Contains(err.Error(), "invalid configuration parameter name") {
		t.Errorf("start with a bad setting name: %v", err)
	}

	// The error of a start is about that start, not an earlier one.
	s.Settings = nil
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start after failures: %v", err)
	}
	// A second server on the same data directory fails, and says why.
	other := *s
	other.Port = 0
	if err := other.Start(ctx); err == nil || !strings.Contains(err.Error(), "a server already runs in") {
		t.Errorf("second start on the same data directory: %v", err)
	}
	if err := s.StopImmediate(ctx); err != nil {
		t.Fatal(err)
	}
	// A start that fails after the postmaster wrote its PID file.
	if err := os.WriteFile(filepath.Join(s.DataDir, "global", "pg_control"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.Start(ctx)
	t.Logf("broken control file: %v", err)
	if err == nil || !strings.Contains(err.Error(), "stopped before taking connections") || strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("start with a broken control file: %v (and not the earlier start's error)", err)
	}

	if os.Geteuid() == 0 {
		root := *s
		root.OS = nil
		if err := root.Start(ctx); !errors.Is(err, errRoot) {
			t.Errorf("start as root: %v, want errRoot", err)
		}
	}
	noLog := *s
	noLog.LogFile = ""
	if err := noLog.Start(ctx); err == nil || !strings.Contains(err.Error(), "no log file") {
		t.Errorf("start without a log file: %v", err)
	}
}

func TestRunAs(t *testing.T) {
	if os.Geteuid() != 0 {
		if u, err := RunAs("", ""); u != nil || err != nil {
			t.Errorf("RunAs as a normal user = %v, %v; want the current user", u, err)
		}
		if _, err := RunAs("root", ""); err == nil || !strings.Contains(err.Error(), "needs root") {
			t.Errorf("RunAs(root) as a normal user: %v", err)
		}
		return
	}
	u, err := EnsureUser(context.Background(), testUser, "/nonexistent", "lifeboat tests (PostgreSQL refuses root)")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := u.Chown(dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dataDir, want, wantErr string
	}{
		{name: testUser, want: testUser},
		{dataDir: dir, want: testUser},                          // the data directory's owner
		{name: "root", wantErr: "refuses to run as root"},       // never root
		{name: "no-such-user-lb", wantErr: `"no-such-user-lb"`}, // named in the error
	} {
		got, err := RunAs(tc.name, tc.dataDir)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("RunAs(%q, %q) = %v, %v; want an error with %q", tc.name, tc.dataDir, got, err, tc.wantErr)
			}
		case err != nil || got == nil || got.Name != tc.want || got.UID == 0:
			t.Errorf("RunAs(%q, %q) = %+v, %v; want %s", tc.name, tc.dataDir, got, err, tc.want)
		}
	}
	// Without a name or an owner it is "postgres", which may not exist here.
	if got, err := RunAs("", ""); err == nil && got.Name != "postgres" {
		t.Errorf("RunAs default = %+v", got)
	}
}

// TestWriteOwnedReplacesLinks: a restored data directory is a snapshot's
// content, and its pg_hba.conf or postgresql.conf may be a link (dangling
// or not) to a file elsewhere; writing them replaces the link and leaves
// the file it pointed to alone.
func TestWriteOwnedReplacesLinks(t *testing.T) {
	t.Parallel()
	dir, elsewhere := t.TempDir(), t.TempDir()
	victim := filepath.Join(elsewhere, "victim")
	if err := os.WriteFile(victim, []byte("untouched\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "pg_hba.conf")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "created"), filepath.Join(dir, "postgresql.conf")); err != nil {
		t.Fatal(err)
	}
	s := &Server{DataDir: dir}
	if err := s.TrustLocal(); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureConf(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(victim); string(data) != "untouched\n" {
		t.Errorf("written through the link: %q", data)
	}
	if _, err := os.Lstat(filepath.Join(elsewhere, "created")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was created through the dangling link: %v", err)
	}
	for _, name := range []string{"pg_hba.conf", "postgresql.conf"} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, %v", name, fi, err)
		}
	}
}
