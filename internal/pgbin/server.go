package pgbin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultUser is the database superuser Init creates and connections use
// unless told otherwise.
const DefaultUser = "postgres"

// Server is one PostgreSQL server run from Bin on DataDir. It listens on no
// TCP address, only on a Unix socket in SocketDir named after Port, and
// logs to LogFile: whatever the data directory's configuration says, Start
// gives these on the command line, which wins over every configuration
// file. The caller makes the directories (SocketDir and LogFile's must be
// writable by OS) and removes them.
type Server struct {
	Bin     Bin
	DataDir string
	// SocketDir holds the server's socket. A socket path is limited to
	// about 107 bytes, so it must be short.
	SocketDir string
	// Port names the socket; 0 makes Init or Start pick a free one.
	Port    int
	LogFile string
	// User is the database role connections use; "" is DefaultUser.
	User string
	// OS is the OS user the server and its programs run as; nil is the
	// current user, who must not be root.
	OS *User
	// Settings are server settings given on the command line (postgres -c
	// name=value), raw, unquoted. They override the configuration files
	// and Start's own settings.
	Settings map[string]string
	// Env is added to the server's environment (its restore_command and
	// archive_command see it), which is otherwise User.Command's
	// allow-list; the other programs (pg_ctl stop, psql, pg_amcheck) do
	// without it.
	Env []string
}

// FreePort returns a TCP port nobody listens on. A server here listens only
// on its socket, but the port names the socket file, and a port nobody
// uses keeps the name, and any later TCP use, unambiguous.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// InitOptions shape the cluster Init creates. Authentication is always
// trust: only OS can reach the socket directory, and a throwaway server
// holds no password.
type InitOptions struct {
	// Superuser is the bootstrap superuser (initdb -U); "" is
	// DefaultUser. Server.User defaults to it.
	Superuser string
	// Encoding and Locale default to UTF8 and C.
	Encoding, Locale string
	// Checksums enables data page checksums.
	Checksums bool
	// Sync makes initdb fsync what it wrote. Off by default (--no-sync):
	// that only matters if the OS crashes before the next checkpoint, and
	// the server itself keeps fsync on.
	Sync bool
	// Conf holds settings appended to postgresql.conf after the port,
	// socket directory and listen_addresses, raw (they are quoted when
	// written). Unlike Settings, a later ALTER SYSTEM overrides them.
	Conf map[string]string
}

// Init creates the cluster in DataDir with initdb, as OS, and writes the
// listening settings and o.Conf into its postgresql.conf, so that a server
// started by other means (pg_ctl restart) listens where s does. DataDir
// must not exist, or be empty and owned by OS.
func (s *Server) Init(ctx context.Context, o InitOptions) error {
	if err := s.choosePort(); err != nil {
		return err
	}
	su := cmp.Or(o.Superuser, DefaultUser)
	if s.User == "" {
		s.User = su
	}
	args := []string{"-D", s.DataDir, "-U", su, "--auth=trust", "-E", cmp.Or(o.Encoding, "UTF8"), "--locale=" + cmp.Or(o.Locale, "C")}
	if !o.Sync {
		args = append(args, "--no-sync")
	}
	if o.Checksums {
		args = append(args, "--data-checksums")
	}
	if out, err := s.OS.Command(ctx, s.Bin.Path("initdb"), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("initdb %s: %v: %s", s.DataDir, err, firstLines(string(out), 3))
	}
	conf := map[string]string{
		"port":                    strconv.Itoa(s.Port),
		"listen_addresses":        "",
		"unix_socket_directories": s.SocketDir,
	}
	var b strings.Builder
	b.WriteString("\n# added by lifeboat (internal/pgbin)\n")
	for _, m := range []map[string]string{conf, o.Conf} { // o.Conf last, so its values win
		for _, k := range slices.Sorted(maps.Keys(m)) {
			line, err := confLine(k, m[k])
			if err != nil {
				return err
			}
			b.WriteString(line)
		}
	}
	p := filepath.Join(s.DataDir, "postgresql.conf")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p, err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p, err)
	}
	return nil
}

func (s *Server) choosePort() error {
	if s.Port != 0 {
		return nil
	}
	p, err := FreePort()
	if err != nil {
		return err
	}
	s.Port = p
	return nil
}

// TrustLocal replaces pg_hba.conf with one line trusting the socket, for a
// data directory restored from elsewhere: the caller does not hold its
// passwords, and only OS can reach the socket directory.
func (s *Server) TrustLocal() error {
	return s.writeOwned("pg_hba.conf", "# written by lifeboat: the socket directory is private\nlocal all all trust\n")
}

// EnsureConf writes an empty postgresql.conf when DataDir has none, as a
// directory restored from a Debian server does not (Debian keeps the
// configuration in /etc/postgresql): the server refuses to start without
// one, and the settings that matter are given on the command line.
func (s *Server) EnsureConf() error {
	if _, err := os.Stat(filepath.Join(s.DataDir, "postgresql.conf")); err == nil {
		return nil
	}
	return s.writeOwned("postgresql.conf", "# written by lifeboat: the data directory held no postgresql.conf\n")
}

// writeOwned replaces name in the data directory, which may be a
// snapshot's content: a symlink there (a forged snapshot's pg_hba.conf
// pointing elsewhere) is replaced by the rename, never written through.
func (s *Server) writeOwned(name, content string) error {
	p := filepath.Join(s.DataDir, name)
	tmp := p + ".lifeboat-new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", p, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.OS.Chown(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// Start starts the server and waits until it takes connections: after
// crash recovery, once a standby is consistent, or, without hot standby,
// once recovery is over and the server promoted. It polls every 100 ms, so
// that the moment it returns measures the start. It fails when the server
// stops first, and gives up with ctx, leaving a server that is still
// starting to Stop.
func (s *Server) Start(ctx context.Context) error {
	if s.OS == nil && os.Geteuid() == 0 {
		return errRoot
	}
	if s.LogFile == "" {
		return errors.New("start PostgreSQL: no log file given (Server.LogFile)")
	}
	for k := range s.Settings {
		if err := CheckSettingName(k); err != nil {
			return fmt.Errorf("start PostgreSQL: %w", err)
		}
	}
	if pid, ok := s.PID(); ok {
		return fmt.Errorf("start PostgreSQL: a server already runs in %s (pid %d)", s.DataDir, pid)
	}
	if err := s.choosePort(); err != nil {
		return err
	}
	from := s.logSize()
	// pg_ctl -W returns at once: pg_ctl -w would return as soon as
	// recovery starts when hot standby is off, and give up after a minute.
	cmd := s.Command(ctx, "pg_ctl", "-D", s.DataDir, "-l", s.LogFile, "-W", "-o", s.options(), "start")
	cmd.Env = append(cmd.Env, s.Env...) // pg_ctl starts the server with its own environment
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl start %s: %v: %s%s", s.DataDir, err, firstLines(string(out), 3), s.logHint(from))
	}
	return s.wait(ctx, from)
}

// options are the server's command-line settings, quoted for the shell
// pg_ctl hands them to.
func (s *Server) options() string {
	set := map[string]string{
		"port":                    strconv.Itoa(s.Port),
		"listen_addresses":        "",
		"unix_socket_directories": s.SocketDir,
		// The log goes to LogFile, each line stamped in UTC (LogTime).
		"logging_collector": "off",
		"log_line_prefix":   "%m [%p] ",
		"log_timezone":      "UTC",
	}
	maps.Copy(set, s.Settings)
	var args []string
	for _, k := range slices.Sorted(maps.Keys(set)) {
		args = append(args, "-c", shellQuote(k+"="+set[k]))
	}
	return strings.Join(args, " ")
}

// wait polls until the server takes connections. A refusal for another
// reason than starting up (no such role or database) also means it is up.
// from is where this start's lines begin in the log.
func (s *Server) wait(ctx context.Context, from int64) error {
	// pg_ctl -W returns before the postmaster writes its PID file: a
	// missing file means "stopped" once it was seen, once the log says the
	// postmaster died (it writes the file before anything else, so a FATAL
	// without it is the postmaster's), or after a while.
	began, seen := time.Now(), false
	for {
		conn, err := s.Connect(ctx, "postgres")
		if err == nil {
			conn.Close(context.WithoutCancel(ctx))
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code != "57P03" { // 57P03: cannot_connect_now
			return nil
		}
		if s.Running() {
			seen = true
		} else if seen || time.Since(began) > 30*time.Second || len(s.logErrors(from, 1, "FATAL:", "PANIC:")) > 0 {
			return fmt.Errorf("the server in %s stopped before taking connections%s", s.DataDir, s.logHint(from))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the server in %s to take connections: %w%s", s.DataDir, ctx.Err(), s.logHint(from))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// PID returns the postmaster's process id, from its PID file, when it is
// running.
func (s *Server) PID() (int, bool) {
	data, err := os.ReadFile(filepath.Join(s.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0, false
	}
	return pid, true
}

// Running reports whether the server is running, whoever started it.
func (s *Server) Running() bool {
	_, ok := s.PID()
	return ok
}

// Stop shuts the server down in fast mode: a clean shutdown with a
// checkpoint. If that fails, or ctx ends first, it stops the server in
// immediate mode and returns why fast mode failed. A server that is not
// running is left alone.
func (s *Server) Stop(ctx context.Context) error {
	if !s.Running() {
		return nil
	}
	fast := s.stop(ctx, "fast")
	if fast == nil {
		return nil
	}
	if err := s.stop(context.WithoutCancel(ctx), "immediate"); err != nil {
		return errors.Join(fast, err)
	}
	return fmt.Errorf("%w (stopped in immediate mode instead)", fast)
}

// StopImmediate shuts the server down without a checkpoint, as a crash
// would: the next start runs crash recovery. That is all a server about to
// be thrown away needs. A server that is not running is left alone.
func (s *Server) StopImmediate(ctx context.Context) error {
	if !s.Running() {
		return nil
	}
	return s.stop(ctx, "immediate")
}

func (s *Server) stop(ctx context.Context, mode string) error {
	// pg_ctl's own wait ends a little before ctx, so its message is what
	// the caller reads.
	wait := 60
	if d, ok := ctx.Deadline(); ok {
		wait = max(int(math.Floor(time.Until(d).Seconds()))-1, 1)
	}
	out, err := s.Command(ctx, "pg_ctl", "-D", s.DataDir, "-m", mode, "-w", "-t", strconv.Itoa(wait), "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s %s: %v: %s%s", mode, s.DataDir, err, firstLines(string(out), 3), s.logHint(0))
	}
	return nil
}

// DSN returns a libpq key/value connection string for database db.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		dsnQuote(s.SocketDir), s.Port, dsnQuote(cmp.Or(s.User, DefaultUser)), dsnQuote(db))
}

// dsnQuote quotes a connection string value where libpq needs it.
func dsnQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`+"\t\n\r") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// ClientArgs are the options that lead a client program (psql, pgbench,
// pg_amcheck) to the server as User.
func (s *Server) ClientArgs() []string {
	return []string{"-h", s.SocketDir, "-p", strconv.Itoa(s.Port), "-U", cmp.Or(s.User, DefaultUser)}
}

// Command builds a command that runs the program name of Bin as OS (see
// User.Command).
func (s *Server) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return s.OS.Command(ctx, s.Bin.Path(name), args...)
}

// Connect opens a connection to database db as User.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(s.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("connection string of %s: %w", s.DataDir, err)
	}
	cfg.ConnectTimeout = 10 * time.Second
	cfg.RuntimeParams["application_name"] = "lifeboat"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to database %s: %w", db, err)
	}
	return conn, nil
}

// ReadOnly runs fn in a read-only transaction on database db, and rolls it
// back.
func (s *Server) ReadOnly(ctx context.Context, db string, fn func(pgx.Tx) error) error {
	conn, err := s.Connect(ctx, db)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin a read-only transaction in %s: %w", db, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return fn(tx)
}

// QueryValue runs query in a read-only transaction on database db and
// returns the first column of its first row as PostgreSQL writes it ("t"
// for true, numerics in full); null reports a NULL. No row is an error.
func (s *Server) QueryValue(ctx context.Context, db, query string) (value string, null bool, err error) {
	err = s.ReadOnly(ctx, db, func(tx pgx.Tx) error {
		var v *string
		// The simple protocol returns every value as text.
		if err := tx.QueryRow(ctx, query, pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil {
			return fmt.Errorf("query %s: %w", firstLines(query, 1), err)
		}
		if v == nil {
			null = true
		} else {
			value = *v
		}
		return nil
	})
	return value, null, err
}

// CreateDatabase creates database name, empty (from template0), unless it
// exists.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()+" template template0"); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
