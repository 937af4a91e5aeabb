package drill

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgLibDir is where Debian installs each PostgreSQL major version's
// programs side by side.
const pgLibDir = "/usr/lib/postgresql"

// binDir finds the server programs of PostgreSQL major version major:
// $LIFEBOAT_PG_BIN when it holds that version, else the Debian layout,
// else pg_config's. A drill must run the same major version as the
// backup's server: a data directory is not readable by any other.
func binDir(ctx context.Context, major int) (string, error) {
	var cands []string
	if d := os.Getenv("LIFEBOAT_PG_BIN"); d != "" {
		cands = append(cands, d)
	}
	cands = append(cands, filepath.Join(pgLibDir, strconv.Itoa(major), "bin"))
	if out, err := exec.CommandContext(ctx, "pg_config", "--bindir").Output(); err == nil {
		cands = append(cands, strings.TrimSpace(string(out)))
	}
	for _, d := range cands {
		out, err := exec.CommandContext(ctx, filepath.Join(d, "postgres"), "--version").Output()
		if err != nil {
			continue
		}
		if m := serverVersion.FindSubmatch(out); m != nil && string(m[1]) == strconv.Itoa(major) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL %d server programs found (looked in %s): install postgresql-%d on the drill host",
		major, strings.Join(cands, ", "), major)
}

// serverVersion finds the major version in `postgres --version`.
var serverVersion = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// runAs is the unprivileged OS user a throwaway server runs as: PostgreSQL
// refuses to run as root. A nil *runAs means the current user.
type runAs struct {
	name     string
	uid, gid int
}

// resolveRunAs picks the OS user for throwaway servers. As root it is the
// user named (the --run-as flag), else the owner of the asset's data
// directory, else "postgres"; otherwise it is the current user, and
// naming another is an error (only root can switch).
func resolveRunAs(name, pgdata string) (*runAs, error) {
	if os.Geteuid() != 0 {
		if name != "" {
			if u, err := user.Current(); err != nil || u.Username != name {
				return nil, fmt.Errorf("--run-as %s needs root; run the drill as %s, or as root", name, name)
			}
		}
		return nil, nil
	}
	if name == "" && pgdata != "" {
		if fi, err := os.Stat(pgdata); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
					name = u.Username
				}
			}
		}
	}
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("drills run PostgreSQL as an unprivileged OS user and %q does not exist: create it or name one with --run-as", name)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid == 0 {
		return nil, errors.New("--run-as root: PostgreSQL refuses to run as root; name an unprivileged user")
	}
	return &runAs{name: u.Username, uid: uid, gid: gid}, nil
}

// ids are the owner a restored file must get: the run-as user, or -1
// (keep) when running as oneself.
func (u *runAs) ids() (int, int) {
	if u == nil {
		return -1, -1
	}
	return u.uid, u.gid
}

func (u *runAs) chown(paths ...string) error {
	if u == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, u.uid, u.gid); err != nil {
			return err
		}
	}
	return nil
}

// command builds a command that runs as u.
func (u *runAs) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid)}}
		cmd.Env = append(cmd.Env, "HOME="+os.TempDir(), "USER="+u.name, "LOGNAME="+u.name)
	}
	// The server outlives pg_ctl; a cancelled drill must still be able to
	// stop it, so pg_ctl is not killed halfway through a start or stop.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// server is a throwaway PostgreSQL server of a drill: its data directory
// and socket are private to the drill, it listens on no TCP address, and
// its log is kept for the report.
type server struct {
	bin     string
	dataDir string
	sockDir string
	logFile string
	port    int
	user    string // database role to connect as
	as      *runAs
}

// freePort returns a TCP port nobody listens on. The server listens only
// on its private socket, whose name carries the port, so the port only has
// to be distinct from servers sharing that directory: none.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serverOptions override what the restored configuration says about where
// and how to listen, log and archive: a drill must never archive into the
// asset's repository, listen where production does, or write into the
// production log directory.
func (s *server) serverOptions() string {
	opts := []string{
		"-c port=" + strconv.Itoa(s.port),
		"-c listen_addresses=''",
		"-c unix_socket_directories='" + s.sockDir + "'",
		"-c archive_mode=off",
		"-c logging_collector=off",
		"-c log_line_prefix='%m [%p] '",
		"-c log_timezone=UTC",
		"-c hot_standby=off",
		"-c max_wal_senders=0",
		"-c shared_preload_libraries=''",
		"-c ssl=off",
	}
	return strings.Join(opts, " ")
}

// start launches the server and returns at once; wait tells when it takes
// connections.
func (s *server) start(ctx context.Context) error {
	cmd := s.as.command(ctx, filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir, "-l", s.logFile, "-W", "-o", s.serverOptions(), "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s%s", err, strings.TrimSpace(string(out)), s.logHint())
	}
	return nil
}

// wait polls until the server takes connections, fails when it exits
// first, and gives up with ctx.
func (s *server) wait(ctx context.Context) error {
	// pg_ctl -W returns before the postmaster writes its PID file: a
	// missing file means "stopped" only once it was seen, or after a while.
	began, seen := time.Now(), false
	for {
		conn, err := s.connect(ctx, "postgres")
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		if s.running() {
			seen = true
		} else if seen || time.Since(began) > 30*time.Second {
			return fmt.Errorf("the restored server stopped before taking connections%s", s.logHint())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the restored server: %w%s", ctx.Err(), s.logHint())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// running reports whether the postmaster is alive.
func (s *server) running() bool {
	data, err := os.ReadFile(filepath.Join(s.dataDir, "postmaster.pid"))
	if err != nil {
		return false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil || errors.Is(syscall.Kill(pid, 0), syscall.EPERM)
}

// stop stops the server immediately: it is thrown away, so nothing it
// holds needs a checkpoint.
func (s *server) stop() {
	if !s.running() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.as.command(ctx, filepath.Join(s.bin, "pg_ctl"), "-D", s.dataDir, "-m", "immediate", "-w", "stop").Run()
}

func (s *server) connConfig(db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host = s.sockDir
	cfg.Port = uint16(s.port)
	cfg.User = s.user
	cfg.Database = db
	cfg.ConnectTimeout = 10 * time.Second
	cfg.RuntimeParams = map[string]string{"application_name": "lifeboat-drill"}
	return cfg, nil
}

func (s *server) connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := s.connConfig(db)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// trustLocal replaces pg_hba.conf with one line trusting the private
// socket: the drill does not hold production passwords, and only the
// run-as user can reach the socket directory.
func (s *server) trustLocal() error {
	p := filepath.Join(s.dataDir, "pg_hba.conf")
	if err := os.WriteFile(p, []byte("# written by lifeboat drill: the socket directory is private to the drill\nlocal all all trust\n"), 0o600); err != nil {
		return fmt.Errorf("write pg_hba.conf: %w", err)
	}
	return s.as.chown(p)
}

// ensureConf writes an empty postgresql.conf when the restored directory
// has none (Debian keeps the configuration in /etc/postgresql, outside the
// backup): the server refuses to start without one, and the settings that
// matter are given on the command line.
func (s *server) ensureConf() error {
	p := filepath.Join(s.dataDir, "postgresql.conf")
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	if err := os.WriteFile(p, []byte("# written by lifeboat drill: the backup held no postgresql.conf\n"), 0o600); err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return s.as.chown(p)
}

// logHint is the tail of the server log's errors, for a message.
func (s *server) logHint() string {
	lines := s.logErrors(3)
	if len(lines) == 0 {
		return ""
	}
	return " (server log: " + strings.Join(lines, " | ") + ")"
}

// logErrors returns the last n FATAL, PANIC or ERROR lines of the server
// log, without their prefixes.
func (s *server) logErrors(n int) []string {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		return nil
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		for _, lvl := range []string{"FATAL:", "PANIC:", "ERROR:"} {
			if i := strings.Index(l, lvl); i >= 0 {
				out = append(out, strings.TrimSpace(l[i:]))
			}
		}
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// logTime finds the timestamp of the first log line containing marker,
// written with the drill's log_line_prefix ("%m ": milliseconds, UTC).
func (s *server) logTime(marker string) (time.Time, bool) {
	data, err := os.ReadFile(s.logFile)
	if err != nil {
		return time.Time{}, false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if !strings.Contains(l, marker) || len(l) < 27 {
			continue
		}
		if t, err := time.Parse("2006-01-02 15:04:05.000 MST", l[:27]); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// amcheck runs pg_amcheck over every database: the heap and the B-tree
// indexes, with jobs connections in parallel, installing the amcheck
// extension where it is missing (the target is thrown away, so the change
// is harmless). --heapallindexed is left out: it checks that every heap
// tuple is in each index, which took four times as long as the rest on the
// reference cluster (see docs/benchmarks.md), and a drill's RTO includes
// its checks.
func (s *server) amcheck(ctx context.Context, jobs int) (string, error) {
	path := filepath.Join(s.bin, "pg_amcheck")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("pg_amcheck not found in %s: install the PostgreSQL client programs of the same version", s.bin)
	}
	cmd := s.as.command(ctx, path, "--all", "--install-missing", "--no-password", "--jobs", strconv.Itoa(max(jobs, 1)),
		"-h", s.sockDir, "-p", strconv.Itoa(s.port), "-U", s.user)
	out, err := cmd.CombinedOutput()
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
