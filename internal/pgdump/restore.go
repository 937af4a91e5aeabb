package pgdump

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// usagef marks a restore or export that asks for something the snapshot
// cannot give: the CLI exits 2 for it.
func usagef(format string, args ...any) error { return asset.Usagef(format, args...) }

// pickDatabase is the dump of the database named, or the only one.
func pickDatabase(s *repo.Snapshot, in *Info, name string) (Database, error) {
	if name != "" {
		for _, d := range in.Databases {
			if d.Name == name {
				return d, nil
			}
		}
		return Database{}, usagef("snapshot %s holds no dump of database %q (it holds %s)", s.ID.Short(), name, databaseList(in))
	}
	switch len(in.Databases) {
	case 0:
		return Database{}, usagef("snapshot %s holds no database dump", s.ID.Short())
	case 1:
		return in.Databases[0], nil
	}
	return Database{}, usagef("snapshot %s holds dumps of %s: name one with --database", s.ID.Short(), databaseList(in))
}

func databaseList(in *Info) string {
	names := make([]string, len(in.Databases))
	for i, d := range in.Databases {
		names[i] = d.Name
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// RestoreOptions shape Restore.
type RestoreOptions struct {
	// DSN is the database restored into; it must exist (normally empty,
	// as createdb makes it). It may hold a password, never shown.
	DSN string
	// Database names the dumped database to restore; "" when the snapshot
	// holds one.
	Database string
	// Workers is pg_restore's parallel jobs; 0 means one per core.
	Workers int
	// Globals restores the roles and tablespaces first, through psql.
	Globals bool
	// NoOwner leaves ownership to the restoring role (pg_restore
	// --no-owner), for a server without the original roles.
	NoOwner bool
	// TempDir is where the scratch copy of the dump is written ("": the
	// system's temporary directory). It needs room for the dump.
	TempDir string
	Log     *slog.Logger
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	Database string // the dumped database restored
	Target   string // where to, without secrets
	Bytes    int64  // size of the archive
	Globals  bool
	// Streamed says the data went through a pipe into pg_restore (one
	// table holds most of it), not a file and pg_restore -j.
	Streamed bool
	Jobs     int // pg_restore's parallel jobs
}

// Restore restores one database of a pg_dump snapshot with pg_restore.
func Restore(ctx context.Context, r *repo.Repository, s *repo.Snapshot, o RestoreOptions) (RestoreResult, error) {
	var res RestoreResult
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = runtime.NumCPU()
	}
	in, err := SnapshotInfo(s)
	if err != nil {
		return res, err
	}
	db, err := pickDatabase(s, in, o.Database)
	if err != nil {
		return res, err
	}
	if o.Globals && in.Globals == "" {
		return res, usagef("snapshot %s holds no globals (the asset has globals: false)", s.ID.Short())
	}
	params, err := parseDSN(o.DSN)
	if err != nil {
		return res, asset.Usagef("--to-dsn: %v", err)
	}
	res.Database, res.Target, res.Bytes, res.Globals, res.Jobs = db.Name, params.display(), db.Bytes, o.Globals, o.Workers
	srv, err := probeServer(ctx, params, res.Target)
	if err != nil {
		return res, err
	}
	pgRestore, psql, err := restoreTools(ctx, srv, in, o.Globals)
	if err != nil {
		return res, err
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return res, err
	}
	globalsPath := ""
	if o.Globals {
		globalsPath = in.Globals
	}
	nodes, err := treeFiles(ctx, r, idx, s, db.File, globalsPath)
	if err != nil {
		return res, err
	}
	scratch, err := os.MkdirTemp(o.TempDir, "lifeboat-pgdump-")
	if err != nil {
		return res, fmt.Errorf("scratch directory for the dump: %w", err)
	}
	defer os.RemoveAll(scratch)
	tc, err := newToolConn(params)
	if err != nil {
		return res, err
	}
	defer tc.Close()
	rs := &pgRestoreRun{r: r, idx: idx, node: nodes[db.File], tool: pgRestore, env: tc.env, conn: tc.conn,
		file: filepath.Join(scratch, "database.dump"), tocEnd: db.TOCEnd, o: o, what: "pg_restore of " + db.Name}
	if o.Globals {
		file := filepath.Join(scratch, GlobalsFile)
		if err := writeNode(ctx, r, idx, nodes[globalsPath], file, o.Workers); err != nil {
			return res, err
		}
		name := fmt.Sprintf("the globals of snapshot %s (%s)", s.ID.Short(), globalsPath)
		if err := restoreGlobals(ctx, psql, tc.conn, rs.env, name, file, o.Log); err != nil {
			return res, err
		}
	}
	// pg_restore -j gains nothing on the data of one table, which one
	// worker loads while the others wait; when one table holds most of
	// the data, streaming it into a sequential pg_restore overlaps reading
	// the repository with loading, and only the indexes and constraints
	// need the parallel jobs. Otherwise the whole file is written first,
	// so pg_restore -j can load tables side by side.
	res.Streamed = db.TOCEnd > 0 && db.DataBytes > 0 && (o.Workers == 1 || db.LargestData*10 >= db.DataBytes*7)
	o.Log.Info("pg_restore", "path", pgRestore.Path, "database", db.Name, "target", res.Target, "jobs", o.Workers,
		"streamed", res.Streamed)
	if res.Streamed {
		return res, rs.streamed(ctx)
	}
	return res, rs.fromFile(ctx)
}

// restoreTools finds pg_restore, and psql when the globals are restored,
// for the target server. pg_restore reads archives of its own and older
// pg_dump versions.
func restoreTools(ctx context.Context, srv server, in *Info, globals bool) (pgRestore, psql tool, err error) {
	dumpMajor, _ := strconv.Atoi(strings.SplitN(in.PGDumpVersion, ".", 2)[0])
	if pgRestore, err = findTool(ctx, "pg_restore", srv.major(), dumpMajor); err != nil {
		return pgRestore, psql, err
	}
	if globals {
		psql, err = findTool(ctx, "psql", srv.major(), 0)
	}
	return pgRestore, psql, err
}

// pgRestoreRun restores one database's archive.
type pgRestoreRun struct {
	r    *repo.Repository
	idx  *repo.Index
	node *repo.Node
	tool tool
	env  []string
	conn *connParams
	file string // scratch copy of the archive
	// tocEnd is where the archive's table of contents ends (0: unknown).
	tocEnd int64
	o      RestoreOptions
	what   string
}

func (p *pgRestoreRun) args(extra ...string) []string {
	args := []string{"--no-password", "--dbname=" + p.conn.String()}
	if p.o.NoOwner {
		args = append(args, "--no-owner")
	}
	return append(args, extra...)
}

// fromFile writes the archive out, then runs pg_restore -j on it.
func (p *pgRestoreRun) fromFile(ctx context.Context) error {
	if err := writeNode(ctx, p.r, p.idx, p.node, p.file, p.o.Workers); err != nil {
		return err
	}
	args := p.args("--jobs="+strconv.Itoa(p.o.Workers), p.file)
	return runTool(ctx, p.tool.Path, args, p.env, p.what, p.o.Log, toolError)
}

// streamed pipes the archive into pg_restore for the schema and the data,
// then restores indexes, constraints and the rest (post-data) with
// pg_restore -j from a scratch file holding the archive's header and
// table of contents only (recorded at backup: tocEnd bytes): post-data
// reads no data, and leaving the data out spares writing the whole dump
// to disk.
func (p *pgRestoreRun) streamed(ctx context.Context) error {
	f, err := os.OpenFile(p.file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scratch copy of the dump: %w", err)
	}
	defer f.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One transaction: the data loads into tables created in it, which
	// PostgreSQL fills without free-space bookkeeping (and, at wal_level
	// minimal, without WAL), as pg_restore -j gets by truncating first;
	// and a failure leaves no half-loaded schema behind.
	cmd := exec.CommandContext(rctx, p.tool.Path, p.args("--section=pre-data", "--section=data", "--single-transaction")...)
	cmd.Env = p.env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	out := newOutputLog(toolError, func(line string) { p.o.Log.Debug("pg_restore says", "line", line) })
	cmd.Stdout, cmd.Stderr = out, out
	stdinR, stdin, err := bigPipe()
	if err != nil {
		return err
	}
	defer stdin.Close()
	cmd.Stdin = stdinR
	err = cmd.Start()
	stdinR.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("start %s: %w", p.tool.Path, err)
	}
	tee := &restoreTee{file: f, stdin: stdin, prefix: p.tocEnd}
	began := time.Now()
	// Blocks go on in 1 MiB batches: one pipe write each instead of one
	// per 16 KiB block.
	batch := bufio.NewWriterSize(tee, 1<<20)
	streamErr := streamFile(ctx, p.r, p.idx, p.node, batch, p.o.Workers)
	if streamErr == nil {
		streamErr = batch.Flush()
	}
	if streamErr == nil && tee.prefix > 0 {
		streamErr = fmt.Errorf("the archive ends before the end of its table of contents (byte %d): %w", p.tocEnd, repo.ErrCorrupt)
	}
	stdin.Close()
	p.o.Log.Debug("pg_restore: archive streamed", "elapsed", time.Since(began))
	if streamErr != nil {
		cancel()
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w (%v)", p.what, ErrInterrupted, ctx.Err())
	case streamErr != nil:
		// pg_restore was cut off by this failure; what it says is no news.
		return fmt.Errorf("read the dump from the repository: %w", streamErr)
	case out.firstError() != "" || waitErr != nil:
		status := "it reported an error"
		if waitErr != nil {
			status = waitErr.Error()
		}
		return fmt.Errorf("%s failed (%s): %s", p.what, status, out.summary())
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("scratch copy of the dump: %w", err)
	}
	p.o.Log.Debug("pg_restore: schema and data loaded", "elapsed", time.Since(began))
	began = time.Now()
	args := p.args("--section=post-data", "--jobs="+strconv.Itoa(p.o.Workers), p.file)
	err = runTool(ctx, p.tool.Path, args, p.env, p.what+" (indexes and constraints)", p.o.Log, toolError)
	p.o.Log.Debug("pg_restore: post-data restored", "elapsed", time.Since(began))
	return err
}

// restoreTee sends the stream to pg_restore and its first prefix bytes
// (the header and table of contents) to the scratch file. pg_restore may
// stop reading early (it failed, and its status will say why); the
// stream is read to its end regardless, every block checked.
type restoreTee struct {
	file    *os.File
	stdin   io.Writer
	prefix  int64 // bytes still to go to the file
	stopped bool
}

func (t *restoreTee) Write(p []byte) (int, error) {
	if t.prefix > 0 {
		n := min(int64(len(p)), t.prefix)
		if _, err := t.file.Write(p[:n]); err != nil {
			return 0, fmt.Errorf("scratch copy of the table of contents: %w", err)
		}
		t.prefix -= n
	}
	if !t.stopped {
		if _, err := t.stdin.Write(p); err != nil {
			t.stopped = true
		}
	}
	return len(p), nil
}

// treeFiles finds the file nodes of a snapshot's tree at the paths given
// ("" paths are skipped).
func treeFiles(ctx context.Context, r *repo.Repository, idx *repo.Index, s *repo.Snapshot, paths ...string) (map[string]*repo.Node, error) {
	want := map[string]bool{}
	for _, p := range paths {
		if p != "" {
			want[p] = true
		}
	}
	found := map[string]*repo.Node{}
	err := r.WalkTree(ctx, idx, s.Tree, func(n *repo.Node) error {
		if want[n.Path] && n.Type == repo.NodeFile {
			found[n.Path] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
	}
	for p := range want {
		if found[p] == nil {
			return nil, fmt.Errorf("snapshot %s: its tree lacks %s, which its details name: %w", s.ID.Short(), p, repo.ErrCorrupt)
		}
	}
	return found, nil
}

// writeNode writes a file of the snapshot to path (a scratch file: not
// synced, it is read at once and removed).
func writeNode(ctx context.Context, r *repo.Repository, idx *repo.Index, n *repo.Node, path string, workers int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scratch copy of the dump: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = streamFile(ctx, r, idx, n, bw, workers)
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the dump from the repository: %w", err)
	}
	return nil
}

// roleExists is the one psql error a globals restore expects: the roles
// pg_dumpall lists include the restoring role and others a server set up
// already has.
var roleExists = regexp.MustCompile(`ERROR:\s+role ".*" already exists`)

// restoreGlobals runs the globals through psql, once checkGlobals found
// nothing in them but SQL and the meta-commands pg_dumpall writes. It does
// not stop at the first error, so that existing roles are skipped; any
// other error fails the restore. name says which file, in errors.
func restoreGlobals(ctx context.Context, psql tool, p *connParams, env []string, name, file string, log *slog.Logger) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := checkGlobals(name, data); err != nil {
		return err
	}
	args := []string{"-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=0", "--dbname=" + p.String(), "-f", file}
	isError := func(line string) bool {
		return (strings.Contains(line, "ERROR:") || strings.Contains(line, "FATAL:") || strings.HasPrefix(line, "psql: error:")) &&
			!roleExists.MatchString(line)
	}
	return runTool(ctx, psql.Path, args, env, "the globals through psql", log, isError)
}

// runTool runs a PostgreSQL program to its end and fails, quoting its
// stderr, when it exits non-zero or writes an error line.
func runTool(ctx context.Context, path string, args, env []string, what string, log *slog.Logger, isError func(string) bool) error {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	out := newOutputLog(isError, func(line string) { log.Debug(filepath.Base(path)+" says", "line", line) })
	cmd.Stdout, cmd.Stderr = out, out
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w (%v)", what, ErrInterrupted, ctx.Err())
	}
	if err != nil || out.firstError() != "" {
		status := "it reported an error"
		if err != nil {
			status = err.Error()
		}
		return fmt.Errorf("%s failed (%s): %s", what, status, out.summary())
	}
	return nil
}
