// Package pgdump keeps logical dumps of PostgreSQL databases (the pg_dump
// asset kind): pg_dump's custom-format archive, with its own compression
// off, streams straight into a treestore session, so the repository's
// content-defined chunks find what an unchanged part of the database
// stored the night before, and compress and encrypt the rest. Roles and
// tablespaces come from pg_dumpall --globals-only, without passwords.
//
// A dump is recorded only when pg_dump exited 0, reported no error, and
// its output was read as a whole archive: every data block its table of
// contents promises, and nothing after. A dump that was killed, failed or
// was cut short never becomes a snapshot.
//
// Restore writes a dump back to a scratch file and hands it to pg_restore
// (parallel jobs need a file they can seek in); Export writes the file as
// pg_dump wrote it, byte for byte, for a stock pg_restore with no Lifeboat.
package pgdump

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// KindName is the snapshot kind of a logical dump.
const KindName = "pg_dump"

// GlobalsFile is the tree path of pg_dumpall's globals in a snapshot.
const GlobalsFile = "globals.sql"

// dumpSuffix ends the tree path of each database's archive.
const dumpSuffix = ".dump"

// BackupOptions shape a dump.
type BackupOptions struct {
	Asset string
	// DSN is the libpq connection string; its database is dumped when
	// Databases is empty. It may hold a password, which is never shown.
	DSN              string
	Databases        []string
	Schemas          []string
	ExcludeSchemas   []string
	ExcludeTableData []string
	Globals          bool
	// Location is the time zone of the dump's name (<asset>_<YYYY-MM-DD>);
	// nil means UTC.
	Location *time.Location
	LockWait time.Duration
	// Record are the checks whose values are taken in the very snapshot
	// pg_dump dumps (an exported snapshot) and kept with the dump. A query
	// that fails is noted, not fatal: the dump is good, and the drill that
	// needs the value says why it is missing.
	Record []checkquery.Query
	Log    *slog.Logger
	// Progress, when not nil, is called as a database's dump is read.
	Progress func(database string, bytes int64)
}

// Info is what a pg_dump snapshot records beyond the tree (Snapshot.Extra).
type Info struct {
	Name             string     `json:"name"` // <asset>_<YYYY-MM-DD>
	ServerVersion    string     `json:"server_version"`
	ServerVersionNum int        `json:"server_version_num"`
	PGDumpVersion    string     `json:"pg_dump_version"`
	Format           string     `json:"format"` // "custom"
	Databases        []Database `json:"databases"`
	Globals          string     `json:"globals,omitempty"` // tree path of the globals, when dumped
	Schemas          []string   `json:"schemas,omitempty"`
	ExcludeSchemas   []string   `json:"exclude_schemas,omitempty"`
	ExcludeTableData []string   `json:"exclude_table_data,omitempty"`
	// Args are the options pg_dump ran with, connection aside.
	Args []string `json:"args"`
	// The values of the drill checks that compare with the backup ("=
	// recorded").
	checkquery.Recorded
}

// Database is one dumped database.
type Database struct {
	Name           string `json:"name"`
	File           string `json:"file"` // tree path of its archive
	Bytes          int64  `json:"bytes"`
	ArchiveVersion string `json:"archive_version"`
	Entries        int    `json:"entries"`
	DataBlocks     int    `json:"data_blocks"`
	// DataBytes and LargestData size the table data and its largest
	// table: a restore chooses how to run pg_restore from them.
	DataBytes   int64 `json:"data_bytes,omitempty"`
	LargestData int64 `json:"largest_data,omitempty"`
	// TOCEnd is where the archive's table of contents ends: all that
	// pg_restore reads to restore what comes after the data.
	TOCEnd int64 `json:"toc_end,omitempty"`
}

// SnapshotInfo reads a pg_dump snapshot's details.
func SnapshotInfo(s *repo.Snapshot) (*Info, error) {
	if s.Kind != KindName {
		return nil, fmt.Errorf("snapshot %s is a %s snapshot, not a logical dump", s.ID.Short(), s.Kind)
	}
	var in Info
	if err := json.Unmarshal(s.Extra, &in); err != nil {
		return nil, fmt.Errorf("snapshot %s: parse dump details: %w", s.ID.Short(), err)
	}
	return &in, nil
}

// DumpName is the name of a pg_dump snapshot (<asset>_<YYYY-MM-DD>), or
// "" for a snapshot of another kind.
func DumpName(s *repo.Snapshot) string {
	if s.Kind != KindName {
		return ""
	}
	in, err := SnapshotInfo(s)
	if err != nil {
		return ""
	}
	return in.Name
}

// fileName is the tree path of a database's archive: the name with every
// byte outside [A-Za-z0-9_-] (and a leading dot) percent-encoded, since a
// database name may hold a slash or be "..".
func fileName(db string) string {
	var b strings.Builder
	for i := 0; i < len(db); i++ {
		c := db[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' && i > 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String() + dumpSuffix
}

// dumpArgs are pg_dump's options apart from the connection: custom format,
// no compression of its own (the repository compresses after it finds
// what it already has, which compressed output would hide), never a
// password prompt.
func dumpArgs(o BackupOptions) []string {
	args := []string{"--format=custom", "--compress=0", "--no-password"}
	for _, s := range o.Schemas {
		args = append(args, "--schema="+s)
	}
	for _, s := range o.ExcludeSchemas {
		args = append(args, "--exclude-schema="+s)
	}
	for _, t := range o.ExcludeTableData {
		args = append(args, "--exclude-table-data="+t)
	}
	return args
}

// Backup dumps the asset's databases (and globals) into one snapshot.
func Backup(ctx context.Context, r *repo.Repository, o BackupOptions) (*repo.Snapshot, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	params, err := parseDSN(o.DSN)
	if err != nil {
		return nil, err
	}
	srv, err := probeServer(ctx, params, params.display())
	if err != nil {
		return nil, err
	}
	dbs := o.Databases
	if len(dbs) == 0 {
		dbs = []string{srv.Database}
	}
	pgDump, err := findTool(ctx, "pg_dump", srv.major(), srv.major())
	if err != nil {
		return nil, err
	}
	var pgDumpall tool
	if o.Globals {
		if pgDumpall, err = findTool(ctx, "pg_dumpall", srv.major(), srv.major()); err != nil {
			return nil, err
		}
	}
	o.Log.Info("dump", "asset", o.Asset, "server", srv.Version, "pg_dump", pgDump.Path, "databases", dbs)

	start := time.Now()
	info := &Info{
		Name:          o.Asset + "_" + start.In(o.Location).Format("2006-01-02"),
		ServerVersion: srv.Version, ServerVersionNum: srv.VersionNum, PGDumpVersion: pgDump.Version, Format: "custom",
		Schemas: o.Schemas, ExcludeSchemas: o.ExcludeSchemas, ExcludeTableData: o.ExcludeTableData, Args: dumpArgs(o),
	}
	type job struct {
		path string
		db   string // "" for the globals
	}
	var jobs []job
	seen := map[string]bool{}
	for _, db := range dbs {
		if seen[db] {
			continue
		}
		seen[db] = true
		jobs = append(jobs, job{path: fileName(db), db: db})
	}
	if o.Globals {
		jobs = append(jobs, job{path: GlobalsFile})
	}
	// A session takes nodes in path order.
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].path < jobs[j].path })

	sess, err := treestore.Begin(ctx, r, treestore.Options{Asset: o.Asset, Kind: KindName, LockWait: o.LockWait, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer sess.Abort()
	tc, err := newToolConn(params)
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	d := &dumper{o: o, sess: sess, conn: tc.conn, full: params, env: tc.env, srv: srv, pgDump: pgDump,
		pgDumpall: pgDumpall, first: dbs[0], rec: &info.Recorded}
	for _, j := range jobs {
		node := &repo.Node{Path: j.path, Type: repo.NodeFile, Mode: 0o600, UID: uint32(os.Getuid()),
			GID: uint32(os.Getgid()), MTime: start.UnixNano()}
		if j.db == "" {
			if err := d.globals(ctx, node); err != nil {
				return nil, err
			}
			info.Globals = j.path
			continue
		}
		db, err := d.database(ctx, node, j.db)
		if err != nil {
			return nil, err
		}
		info.Databases = append(info.Databases, db)
	}
	if err := ctx.Err(); err != nil {
		return nil, interrupted(ctx)
	}
	return sess.Commit(ctx, "full", info)
}

// dumper runs the dumps of one backup into its session.
type dumper struct {
	o                 BackupOptions
	sess              *treestore.Session
	conn              *connParams // without the secrets (see toolConn)
	full              *connParams // with them, for Lifeboat's own connections
	env               []string
	first             string               // the database checks without one run in
	rec               *checkquery.Recorded // where checks' values go
	srv               server
	pgDump, pgDumpall tool
}

// database stores pg_dump's archive of database db as node.
func (d *dumper) database(ctx context.Context, node *repo.Node, db string) (Database, error) {
	args := append(dumpArgs(d.o), "--dbname="+d.conn.with("dbname", db).String())
	snapshot, release, err := d.recordChecks(ctx, db)
	if err != nil {
		return Database{}, err
	}
	defer release()
	if snapshot != "" {
		args = append(args, "--snapshot="+snapshot)
	}
	run := &toolRun{name: "pg_dump", what: "database " + db, tool: d.pgDump, args: args, env: d.env, log: d.o.Log}
	var arch *Archive
	var progress func(int64)
	if d.o.Progress != nil {
		progress = func(n int64) { d.o.Progress(db, n) }
	}
	err = run.stream(ctx, d.sess, node, func(r io.Reader) error {
		var err error
		arch, err = checkArchive(r)
		return err
	}, progress)
	if err != nil {
		return Database{}, err
	}
	if !arch.Complete {
		d.o.Log.Warn("pg_dump archive format is newer than Lifeboat checks; relying on pg_dump's exit status",
			"database", db, "format", arch.Version)
	}
	return Database{Name: db, File: node.Path, Bytes: node.Size, ArchiveVersion: arch.Version, Entries: arch.Entries,
		DataBlocks: arch.DataBlocks, DataBytes: arch.DataBytes, LargestData: arch.LargestData, TOCEnd: arch.TOCEnd}, nil
}

// recordChecks runs the checks of database db in a transaction whose
// snapshot it exports for pg_dump, so the values are those of the very
// data dumped. The transaction must stay open until pg_dump has taken the
// snapshot: release ends it. No checks for db: no snapshot, nothing to
// release.
func (d *dumper) recordChecks(ctx context.Context, db string) (snapshot string, release func(), err error) {
	var qs []checkquery.Query
	for _, q := range d.o.Record {
		if q.Database == db || (q.Database == "" && db == d.first) {
			qs = append(qs, q)
		}
	}
	if len(qs) == 0 {
		return "", func() {}, nil
	}
	conn, err := pgx.Connect(ctx, d.full.with("dbname", db).String())
	if err != nil {
		return "", nil, fmt.Errorf("database %s: connect to record the drill checks: %w", db, err)
	}
	release = func() { conn.Close(context.Background()) }
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err == nil {
		err = tx.QueryRow(ctx, "select pg_export_snapshot()").Scan(&snapshot)
	}
	if err != nil {
		release()
		return "", nil, fmt.Errorf("database %s: export a snapshot for pg_dump: %w", db, err)
	}
	for _, q := range qs {
		// A failed query aborts the transaction, and with it the
		// snapshot pg_dump needs: each runs under a savepoint.
		sp, err := tx.Begin(ctx)
		if err != nil {
			release()
			return "", nil, fmt.Errorf("database %s: %w", db, err)
		}
		v, null, qerr := checkquery.Postgres(ctx, sp, q.SQL)
		if qerr != nil {
			if err := sp.Rollback(ctx); err != nil {
				release()
				return "", nil, fmt.Errorf("database %s: %w", db, err)
			}
		} else if err := sp.Commit(ctx); err != nil {
			release()
			return "", nil, fmt.Errorf("database %s: %w", db, err)
		}
		d.rec.Record(q.Name, v, null, qerr)
	}
	return snapshot, release, nil
}

// globals stores pg_dumpall --globals-only as node.
func (d *dumper) globals(ctx context.Context, node *repo.Node) error {
	// pg_dumpall ignores the connection string's database (it would
	// visit every one) and starts at -l.
	args := []string{"--globals-only", "--no-role-passwords", "--no-password", "-l", d.srv.Database,
		"--dbname=" + d.conn.String()}
	run := &toolRun{name: "pg_dumpall", what: "globals", tool: d.pgDumpall, args: args, env: d.env, log: d.o.Log}
	trailer := &tailBuffer{max: 256}
	return run.stream(ctx, d.sess, node, func(r io.Reader) error {
		if _, err := io.Copy(trailer, r); err != nil {
			return err
		}
		// pg_dumpall ends every complete dump with this line.
		if !strings.Contains(string(trailer.buf), "PostgreSQL database cluster dump complete") {
			return fmt.Errorf("%w: pg_dumpall's output lacks its closing line", ErrIncomplete)
		}
		return nil
	}, nil)
}

// ErrInterrupted marks a dump stopped by a signal or a cancelled context.
var ErrInterrupted = errors.New("interrupted")

// interrupted says why ctx ended, when it knows more than "canceled"
// (signal.NotifyContext names the signal).
func interrupted(ctx context.Context) error {
	why := ""
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
		why = " (" + cause.Error() + ")"
	}
	return fmt.Errorf("%w%s: the dump was stopped and no snapshot was recorded", ErrInterrupted, why)
}

// toolRun is one run of a PostgreSQL program whose stdout is stored.
type toolRun struct {
	name string // pg_dump or pg_dumpall
	what string // what it dumps, for messages
	tool tool
	args []string
	env  []string
	log  *slog.Logger
}

// stopGrace is how long a program has to exit after SIGTERM before it is
// killed.
const stopGrace = 10 * time.Second

// stream runs the program and stores its stdout as node, while check reads
// the same bytes (check must read to EOF). It fails, leaving the node out
// of any snapshot, unless the program exited 0 without an error line and
// check accepted its output.
func (t *toolRun) stream(ctx context.Context, sess *treestore.Session, node *repo.Node,
	check func(io.Reader) error, progress func(int64)) error {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(dctx, t.tool.Path, t.args...)
	cmd.Env = t.env
	// SIGTERM lets pg_dump close its connection; SIGKILL follows if it
	// does not exit.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	stderr := newOutputLog(toolError, func(line string) {
		// Its warnings are worth an operator's eye; what it says once it
		// is being stopped ("terminated by user") is not.
		if !toolError(line) && dctx.Err() == nil {
			t.log.Warn(t.name+" says", "what", t.what, "line", line)
		} else {
			t.log.Debug(t.name+" says", "what", t.what, "line", line)
		}
	})
	cmd.Stderr = stderr
	stdout, stdoutW, err := bigPipe()
	if err != nil {
		return err
	}
	defer stdout.Close()
	cmd.Stdout = stdoutW
	err = cmd.Start()
	stdoutW.Close() // the child has its own copy: EOF comes when it exits
	if err != nil {
		return fmt.Errorf("start %s: %w", t.tool.Path, err)
	}

	// The checker reads what the session reads, through a pipe: a format
	// error closes the pipe, which fails the session's read at once.
	pr, pw := io.Pipe()
	checked := make(chan error, 1)
	go func() {
		err := check(pr)
		if err == nil {
			// Whatever comes after the end check accepted is an error.
			if n, _ := io.Copy(io.Discard, pr); n > 0 {
				err = fmt.Errorf("%w: %d bytes after the end", ErrIncomplete, n)
			}
		}
		pr.CloseWithError(errors.Join(err, errCheckDone))
		checked <- err
	}()
	src := &countingReader{r: io.TeeReader(stdout, pw), progress: progress}
	addErr := sess.Add(ctx, node, src)
	pw.CloseWithError(addErr) // nil: the checker sees EOF
	if addErr != nil {
		cancel() // pg_dump may be blocked writing to a pipe nobody reads
	}
	waitErr := cmd.Wait()
	checkErr := <-checked

	// When this side stopped first, pg_dump was stopped by us and what it
	// says is no news; otherwise its own failure is the cause.
	notWhole := func() error {
		return fmt.Errorf("the output of %s of %s is not whole, so it was not recorded: %w", t.name, t.what, checkErr)
	}
	switch {
	case ctx.Err() != nil:
		return interrupted(ctx)
	case addErr != nil && !errors.Is(addErr, errCheckDone):
		return fmt.Errorf("store the %s of %s: %w", t.name, t.what, addErr)
	case addErr != nil:
		return notWhole()
	case stderr.firstError() != "" || waitErr != nil:
		status := "it reported an error"
		if waitErr != nil {
			status = waitErr.Error()
		}
		return fmt.Errorf("%s of %s failed (%s): %s", t.name, t.what, status, stderr.summary())
	case checkErr != nil:
		return notWhole()
	}
	t.log.Info(t.name+" done", "what", t.what, "bytes", node.Size)
	return nil
}

// errCheckDone is what a read of the pipe sees once the checker stopped.
var errCheckDone = errors.New("archive check stopped reading")

// countingReader reports how much was read.
type countingReader struct {
	r        io.Reader
	n        atomic.Int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		total := c.n.Add(int64(n))
		if c.progress != nil {
			c.progress(total)
		}
	}
	return n, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}
