// Command lbbench runs Lifeboat and pgBackRest side by side against one
// PostgreSQL reference cluster on this machine and reports wall time,
// repository bytes, peak memory, restore time and WAL-push latency for each.
//
// It is a benchmark, not a test: it builds a multi-gigabyte cluster, needs the
// pgbackrest and PostgreSQL binaries, and takes many minutes. bench/run.sh
// installs what it needs and runs it; docs/benchmarks.md explains the numbers.
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "lbbench: %v\n", err)
		os.Exit(1)
	}
}

// config holds the parsed flags.
type config struct {
	root           string
	rebuild        bool
	buildOnly      bool
	scale          int
	txRows         int64
	batchRows      int64
	tools          []string // in run order
	runs           int
	lifeboat       string
	pgbackrest     string
	pgBin          string
	dropCaches     bool
	pgbenchSeconds int
	pgbenchClients int
	pgbenchRate    int
	processMax     int
	jsonOut        string
	user           string
	stepTimeout    time.Duration
	drainTimeout   time.Duration
	verifyRestore  bool
	keepRunning    bool
	keepRestore    bool
	storage        string // storageFS or storageS3
	minio          string // MinIO binary, for -storage s3
	copy           bool   // Lifeboat also archives to a copy repository; measure its lag
	drill          drillConfig
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("lbbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := os.Geteuid() == 0
	fs.StringVar(&cfg.root, "root", "/var/tmp/lifeboat-bench", "bench root: cluster, repositories, restores, logs")
	fs.BoolVar(&cfg.rebuild, "rebuild", false, "rebuild the reference cluster even if a complete one exists")
	fs.BoolVar(&cfg.buildOnly, "build-only", false, "build (or check) the reference cluster and stop")
	fs.IntVar(&cfg.scale, "scale", 100, "pgbench -i scale factor of the reference cluster")
	fs.Int64Var(&cfg.txRows, "tx-rows", 6_000_000, "rows in the transactions table of the reference cluster")
	fs.Int64Var(&cfg.batchRows, "batch-rows", 1_000_000, "rows per INSERT batch while building transactions")
	tools := fs.String("tools", "pgbackrest,lifeboat", "tools to run: pgbackrest, lifeboat or both")
	order := fs.String("order", "pgbackrest,lifeboat", "order of the tools within each run (e.g. lifeboat,pgbackrest)")
	fs.IntVar(&cfg.runs, "runs", 1, "number of runs; ratios use the median over runs")
	fs.StringVar(&cfg.lifeboat, "lifeboat", "lifeboat", "lifeboat binary (copied into the bench root)")
	fs.StringVar(&cfg.pgbackrest, "pgbackrest", "pgbackrest", "pgbackrest binary")
	fs.StringVar(&cfg.pgBin, "pg-bin", "", "PostgreSQL bin directory (default: as drills find it: $LIFEBOAT_PG_BIN, the newest /usr/lib/postgresql/*/bin, PATH, pg_config --bindir)")
	fs.BoolVar(&cfg.dropCaches, "drop-caches", root, "drop the page cache before each measured step (needs root)")
	fs.IntVar(&cfg.pgbenchSeconds, "pgbench-seconds", 30, "length of the pgbench -N window between full and incremental")
	fs.IntVar(&cfg.pgbenchClients, "pgbench-clients", 4, "pgbench -c")
	fs.IntVar(&cfg.pgbenchRate, "pgbench-rate", 400, "pgbench -R: transactions per second, so both tools back up the same changes (0: unthrottled)")
	fs.IntVar(&cfg.processMax, "process-max", runtime.NumCPU(), "pgBackRest process-max")
	fs.StringVar(&cfg.jsonOut, "json", "", "write results as JSON here (default: <root>/results.json)")
	fs.StringVar(&cfg.user, "user", "lifeboat-bench", "OS user for the cluster and the tools when run as root")
	fs.DurationVar(&cfg.stepTimeout, "step-timeout", 2*time.Hour, "kill a backup or restore that runs longer")
	fs.DurationVar(&cfg.drainTimeout, "drain-timeout", 2*time.Minute, "how long to wait for the archiver to catch up after pgbench")
	fs.BoolVar(&cfg.verifyRestore, "verify-restore", true, "start each restored cluster and compare its data to the source")
	fs.BoolVar(&cfg.keepRunning, "keep-running", false, "leave the reference cluster running at exit")
	fs.BoolVar(&cfg.keepRestore, "keep-restore", false, "keep the restored data directories")
	fs.StringVar(&cfg.storage, "storage", storageFS, "where the repositories live: fs (directories in the bench root) or s3 (MinIO on 127.0.0.1 over TLS)")
	fs.StringVar(&cfg.minio, "minio", "/usr/local/lib/lifeboat/minio", "MinIO server binary for -storage s3 (scripts/install-minio.sh builds it)")
	fs.BoolVar(&cfg.copy, "copy", false, "give Lifeboat a copy repository (dr) and measure how far it lags the primary under pgbench")
	drillParts := cfg.drill.flags(fs)
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.tools, err = toolOrder(*tools, *order); err != nil {
		return cfg, err
	}
	if cfg.drill.enabled {
		if err := cfg.checkDrill(fs, *drillParts); err != nil {
			return cfg, err
		}
	}
	if cfg.scale < 1 || cfg.txRows < 0 || cfg.batchRows < 1 || cfg.runs < 1 || cfg.pgbenchSeconds < 1 || cfg.pgbenchClients < 1 || cfg.processMax < 1 {
		return cfg, errors.New("-scale, -batch-rows, -runs, -pgbench-seconds, -pgbench-clients and -process-max must be positive; -tx-rows not negative")
	}
	if cfg.storage != storageFS && cfg.storage != storageS3 {
		return cfg, fmt.Errorf("-storage %q: want fs or s3", cfg.storage)
	}
	if cfg.root, err = filepath.Abs(cfg.root); err != nil {
		return cfg, fmt.Errorf("bench root: %w", err)
	}
	if cfg.jsonOut == "" {
		cfg.jsonOut = filepath.Join(cfg.root, "results.json")
		if cfg.drill.enabled {
			cfg.jsonOut = filepath.Join(cfg.root, "results-drill.json")
		}
	}
	return cfg, nil
}

// toolOrder returns the selected tools in the requested order.
func toolOrder(tools, order string) ([]string, error) {
	known := []string{toolPgBackRest, toolLifeboat}
	split := func(s string) ([]string, error) {
		var out []string
		for _, f := range strings.Split(s, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if !slices.Contains(known, f) {
				return nil, fmt.Errorf("unknown tool %q (want pgbackrest or lifeboat)", f)
			}
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
		return out, nil
	}
	sel, err := split(tools)
	if err != nil {
		return nil, fmt.Errorf("-tools: %w", err)
	}
	ord, err := split(order)
	if err != nil {
		return nil, fmt.Errorf("-order: %w", err)
	}
	for _, k := range known {
		if !slices.Contains(ord, k) {
			ord = append(ord, k)
		}
	}
	var out []string
	for _, t := range ord {
		if slices.Contains(sel, t) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-tools selects no tool")
	}
	return out, nil
}

// harness carries what every phase needs.
type harness struct {
	cfg      config
	cred     *syscall.Credential // nil when not root
	uid, gid int
	r        *runner
	cl       *cluster
	progress io.Writer
	segSize  int64
	dropErr  error        // set once dropping the page cache has failed
	minio    *minioServer // the S3 store with -storage s3, else nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.progress, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (h *harness) logPath(label string) string {
	return filepath.Join(h.cfg.root, "logs", label+".log")
}

// mkdirOwned creates dir and hands it to the bench user, so PostgreSQL and
// the tools (which never run as root) can write there.
func (h *harness) mkdirOwned(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if h.cred != nil {
		if err := os.Chown(dir, h.uid, h.gid); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
	}
	return nil
}

func (h *harness) writeOwned(path string, data []byte, perm os.FileMode) error {
	if err := writeFileAtomic(path, data, perm); err != nil {
		return err
	}
	if err := os.Chmod(path, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if h.cred != nil {
		if err := os.Chown(path, h.uid, h.gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	return nil
}

// dropCaches reports whether the page cache was dropped; after the first
// failure it stops trying and says so once.
func (h *harness) dropCaches() bool {
	if !h.cfg.dropCaches || h.dropErr != nil {
		return false
	}
	if err := dropCaches(); err != nil {
		h.dropErr = err
		h.logf("warning: %v; measuring with a warm cache from now on", err)
		return false
	}
	return true
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	h := &harness{cfg: cfg, progress: stderr}
	if err := h.setup(ctx); err != nil {
		return err
	}
	res := results{StartedAt: time.Now().UTC(), Flags: cfg.summary()}
	res.Machine = h.machine(ctx)

	info, err := h.ensureCluster(ctx)
	defer func() {
		if cfg.keepRunning {
			return
		}
		if err := h.cl.stop(context.WithoutCancel(ctx)); err != nil {
			h.logf("warning: %v", err)
		}
	}()
	if err != nil {
		return err
	}
	if info.Reused {
		if err := h.describeCluster(ctx, &info); err != nil {
			return err
		}
	}
	res.Cluster = info
	if h.segSize, err = h.cl.queryInt(ctx, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'"); err != nil {
		return err
	}
	res.Machine.PGVersion = info.PGVersion

	if !cfg.buildOnly && cfg.storage == storageS3 {
		h.logf("starting MinIO (%s)", cfg.minio)
		if h.minio, err = h.startMinIO(ctx); err != nil {
			return err
		}
		defer h.minio.stop()
		h.logf("MinIO %s at %s, buckets %s", h.minio.Version, h.minio.Endpoint, strings.Join(h.buckets(), ", "))
	}
	res.Storage = h.storageInfo()

	if !cfg.buildOnly && cfg.drill.enabled {
		res.Drill = h.runDrillBench(ctx)
		res.Machine.LifeboatVersion = res.Drill.Version
		if ctx.Err() != nil {
			return ctx.Err()
		}
	} else if !cfg.buildOnly {
		for run := 1; run <= cfg.runs; run++ {
			for _, tool := range cfg.tools {
				spec := h.lifeboatSpec()
				if tool == toolPgBackRest {
					spec = h.pgbackrestSpec()
				}
				tr := h.runPhase(ctx, run, spec)
				res.Runs = append(res.Runs, tr)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		for _, tr := range res.Runs {
			switch tr.Tool {
			case toolPgBackRest:
				res.Machine.PgBackRestVersion = tr.Version
			case toolLifeboat:
				res.Machine.LifeboatVersion = tr.Version
			}
		}
		res.Summary = summarise(res.Runs, cfg.storage)
	}
	res.FinishedAt = time.Now().UTC()
	res.DropCachesError = errString(h.dropErr)

	printReport(stdout, &res)
	if res.Drill != nil {
		printDrillReport(stdout, res.Drill)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(cfg.jsonOut, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", cfg.jsonOut)
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// setup picks the OS user, creates the bench root and finds the binaries.
func (h *harness) setup(ctx context.Context) error {
	cfg := &h.cfg
	var osUser *pgbin.User // the current user
	if os.Geteuid() == 0 {
		u, err := pgbin.EnsureUser(ctx, cfg.user, filepath.Join(cfg.root, "home"), "lifeboat benchmark")
		if err != nil {
			return err
		}
		osUser = u
		h.uid, h.gid = u.UID, u.GID
		h.cred = u.Credential()
	} else {
		cfg.user = currentUserName()
		h.uid, h.gid = os.Getuid(), os.Getgid()
	}
	for _, d := range []string{cfg.root, filepath.Join(cfg.root, "logs"), filepath.Join(cfg.root, "bin"),
		filepath.Join(cfg.root, "tmp"), filepath.Join(cfg.root, "home")} {
		if err := h.mkdirOwned(d, 0o755); err != nil {
			return err
		}
	}
	if cfg.pgBin == "" {
		bin, err := pgbin.Find(ctx, 0)
		if err != nil {
			return fmt.Errorf("%w (or set -pg-bin)", err)
		}
		cfg.pgBin = bin.Dir
	}
	for _, name := range []string{"initdb", "pg_ctl", "postgres", "psql", "pgbench"} {
		if _, err := os.Stat(filepath.Join(cfg.pgBin, name)); err != nil {
			return fmt.Errorf("PostgreSQL binary %s not found in %s (set -pg-bin): %w", name, cfg.pgBin, err)
		}
	}
	if slices.Contains(cfg.tools, toolPgBackRest) {
		p, err := exec.LookPath(cfg.pgbackrest)
		if err != nil {
			return fmt.Errorf("pgbackrest not found (apt-get install pgbackrest, or -tools lifeboat): %w", err)
		}
		if cfg.pgbackrest, err = filepath.Abs(p); err != nil {
			return fmt.Errorf("pgbackrest path: %w", err)
		}
	}
	if slices.Contains(cfg.tools, toolLifeboat) {
		// The archiver and the tools run as the bench user, who cannot reach a
		// binary in root's temporary directory: run a copy in the bench root.
		// A missing binary is not fatal; the lifeboat phase reports it.
		dst := filepath.Join(cfg.root, "bin", "lifeboat")
		_ = os.Remove(dst)
		if p, err := exec.LookPath(cfg.lifeboat); err != nil {
			fmt.Fprintf(h.progress, "warning: lifeboat binary %q not found; its phase will fail: %v\n", cfg.lifeboat, err)
		} else if err := copyFile(p, dst, 0o755); err != nil {
			return err
		}
	}
	home := filepath.Join(cfg.root, "home")
	h.r = &runner{cred: h.cred, logDir: filepath.Join(cfg.root, "logs"), env: []string{
		"PATH=" + cfg.pgBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home, "USER=" + cfg.user, "LOGNAME=" + cfg.user,
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8", "TZ=UTC", "TMPDIR=" + filepath.Join(cfg.root, "tmp"),
	}}
	h.cl = &cluster{r: h.r, Server: &pgbin.Server{Bin: pgbin.Bin{Dir: cfg.pgBin}, DataDir: filepath.Join(cfg.root, "data"),
		SocketDir: filepath.Join(cfg.root, "sock"), LogFile: filepath.Join(cfg.root, "logs", "postgresql.log"),
		OS: osUser, Env: h.r.env}}
	return nil
}

func currentUserName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Getuid())
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}
