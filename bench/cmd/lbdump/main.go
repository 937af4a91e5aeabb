// Command lbdump measures Lifeboat's logical dumps (kind pg_dump) against
// pg_dump and pg_restore themselves on one reference database, for the
// targets of the logical-dump issue:
//
//   - the nightly dump after a day of 1% row changes stores at most 10% of
//     the first dump's bytes;
//   - lifeboat backup takes at most 1.0x the wall time of pg_dump -Fc (its
//     default compression, to a file) of the same database in the same run;
//   - lifeboat restore --workers N takes at most 1.0x pg_restore -j N of
//     pg_dump's own file.
//
// "A day of 1% row changes" is 1% of the rows updated (amount and memo
// changed) and then 1% inserted. Where the updates land matters to any
// deduplication, so there are two modes: "recent" updates random rows
// among the newest 10% (a ledger settles and corrects recent
// transactions), "uniform" updates a 1% Bernoulli sample of the whole
// table (the worst case). Each mode starts from a fresh repository.
//
// bench/dump.sh builds lifeboat and runs this; docs/pgdump.md explains the
// numbers.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "lbdump: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	root       string
	lifeboat   string
	pgBin      string
	user       string
	rows       int64
	jobs       int
	restores   int
	modes      []string
	rebuild    bool
	dropCaches bool
	jsonOut    string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("lbdump", flag.ContinueOnError)
	isRoot := os.Geteuid() == 0
	fs.StringVar(&c.root, "root", "/var/tmp/lifeboat-dumpbench", "bench root: cluster, repositories, dump files, profiles")
	fs.StringVar(&c.lifeboat, "lifeboat", "lifeboat", "lifeboat binary")
	fs.StringVar(&c.pgBin, "pg-bin", "/usr/lib/postgresql/15/bin", "PostgreSQL bin directory (put first on PATH for every tool)")
	fs.StringVar(&c.user, "user", "lifeboat-bench", "OS user for the cluster and the tools when run as root")
	fs.Int64Var(&c.rows, "rows", 3_000_000, "rows in the transactions table")
	fs.IntVar(&c.jobs, "jobs", runtime.NumCPU(), "pg_restore -j and lifeboat restore --workers")
	fs.IntVar(&c.restores, "restores", 3, "restores of each tool per mode, alternating which goes first; the median counts")
	modes := fs.String("modes", "recent,uniform", "change modes to run, in order: recent, uniform")
	fs.BoolVar(&c.rebuild, "rebuild", false, "rebuild the database even if a complete one exists")
	fs.BoolVar(&c.dropCaches, "drop-caches", isRoot, "drop the page cache before each measured step (needs root)")
	fs.StringVar(&c.jsonOut, "json", "", "write results as JSON here (default: <root>/results.json)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, m := range strings.Split(*modes, ",") {
		if m = strings.TrimSpace(m); m != "" {
			if m != "recent" && m != "uniform" {
				return c, fmt.Errorf("-modes: unknown mode %q (want recent or uniform)", m)
			}
			c.modes = append(c.modes, m)
		}
	}
	if c.rows < 1000 || c.jobs < 1 || c.restores < 1 || len(c.modes) == 0 {
		return c, errors.New("-rows must be at least 1000, -jobs and -restores positive, -modes not empty")
	}
	var err error
	if c.root, err = filepath.Abs(c.root); err != nil {
		return c, err
	}
	if c.lifeboat, err = exec.LookPath(c.lifeboat); err != nil {
		return c, fmt.Errorf("-lifeboat: %w", err)
	}
	if c.lifeboat, err = filepath.Abs(c.lifeboat); err != nil {
		return c, err
	}
	if c.jsonOut == "" {
		c.jsonOut = filepath.Join(c.root, "results.json")
	}
	return c, nil
}

// bench holds what every step needs.
type bench struct {
	cfg  config
	cred *syscall.Credential // nil when not root
	uid  int
	gid  int
	env  []string
	sock string
	port int
	data string
	log  io.Writer
}

func run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	b := &bench{cfg: cfg, uid: os.Getuid(), gid: os.Getgid(), log: os.Stderr,
		sock: filepath.Join(cfg.root, "sock"), data: filepath.Join(cfg.root, "data"), port: 5497}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(cfg.user)
		if err != nil {
			return fmt.Errorf("-user %s: %w (create it: useradd --system %s)", cfg.user, err, cfg.user)
		}
		b.uid, _ = strconv.Atoi(u.Uid)
		b.gid, _ = strconv.Atoi(u.Gid)
		b.cred = &syscall.Credential{Uid: uint32(b.uid), Gid: uint32(b.gid), Groups: []uint32{}}
	}
	// Every tool, lifeboat's pg_dump included, comes from pg-bin; PG*
	// variables of the caller could point them elsewhere.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") && !strings.HasPrefix(kv, "PATH=") && !strings.HasPrefix(kv, "HOME=") {
			b.env = append(b.env, kv)
		}
	}
	b.env = append(b.env, "PATH="+cfg.pgBin+":"+os.Getenv("PATH"), "HOME="+cfg.root)
	if err := b.mkdir(cfg.root); err != nil {
		return err
	}
	host, err := describeMachine()
	if err != nil {
		return err
	}
	info, err := b.ensureDatabase(ctx)
	if err != nil {
		return err
	}
	defer b.pgctl(context.WithoutCancel(ctx), "stop", "-m", "fast")
	res := results{Machine: host, Database: info, Jobs: cfg.jobs, DropCaches: cfg.dropCaches, Started: time.Now().UTC()}
	for _, mode := range cfg.modes {
		m, err := b.runMode(ctx, mode)
		if err != nil {
			return fmt.Errorf("mode %s: %w", mode, err)
		}
		res.Modes = append(res.Modes, m)
		m.print(os.Stdout, cfg.jobs)
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(cfg.jsonOut, append(out, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Printf("results: %s\n", cfg.jsonOut)
	return nil
}

func (b *bench) mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.Chown(dir, b.uid, b.gid)
}

// step is one measured command.
type step struct {
	Wall   float64 `json:"wall_seconds"`
	CPU    float64 `json:"cpu_seconds"` // user+sys of the command and the children it waited for
	MaxRSS int64   `json:"max_rss_bytes"`
}

// cmd runs a program as the bench user and returns its stdout.
func (b *bench) cmd(ctx context.Context, stdin string, name string, args ...string) (string, step, error) {
	var st step
	c := exec.CommandContext(ctx, name, args...)
	c.Env = b.env
	c.Dir = b.cfg.root
	c.SysProcAttr = &syscall.SysProcAttr{Credential: b.cred}
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	start := time.Now()
	err := c.Run()
	st.Wall = time.Since(start).Seconds()
	if ps := c.ProcessState; ps != nil {
		st.CPU = (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			st.MaxRSS = ru.Maxrss * 1024
		}
	}
	if err != nil {
		return out.String(), st, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, tail(errb.String()))
	}
	return out.String(), st, nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

func (b *bench) tool(name string) string { return filepath.Join(b.cfg.pgBin, name) }

func (b *bench) dsn(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", b.sock, b.port, db)
}

// psql runs SQL in db and returns the unaligned, tuples-only output.
func (b *bench) psql(ctx context.Context, db, sql string) (string, error) {
	out, _, err := b.cmd(ctx, sql, b.tool("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", b.dsn(db))
	return strings.TrimSpace(out), err
}

func (b *bench) pgctl(ctx context.Context, args ...string) error {
	_, _, err := b.cmd(ctx, "", b.tool("pg_ctl"), append([]string{"-D", b.data, "-w", "-t", "600"}, args...)...)
	return err
}

// dropCaches empties the page cache so each measured step reads from disk.
func (b *bench) dropCaches() {
	if !b.cfg.dropCaches {
		return
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		fmt.Fprintf(b.log, "lbdump: drop caches: %v (continuing with a warm cache)\n", err)
		b.cfg.dropCaches = false
	}
}

func describeMachine() (map[string]string, error) {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "goarch": runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	return m, nil
}
