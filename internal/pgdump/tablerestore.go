package pgdump

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgdrill"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// tableRestore writes some tables or schemas of one dumped database to
// --out in pg_dump's custom format. The names are checked against the
// dump's table of contents, read from the repository alone (the data is
// not read), before anything else is done. Then the schemas involved are
// loaded with pg_restore -n into a throwaway cluster, and pg_dump takes
// exactly the selection from it, with the indexes, constraints and
// sequences pg_dump -t carries (pg_restore -t would leave them out).
func tableRestore(ctx context.Context, r *asset.Restore, sel pgdrill.Selection) (*asset.Restored, error) {
	a, f := r.Asset, r.Flags
	if r.To != "" || f.String("to-dsn") != "" || f.Bool("globals") {
		return nil, asset.Usagef("--to, --to-dsn and --globals do not apply with --table or --schema: the selection goes to --out FILE")
	}
	out, err := filepath.Abs(f.String("out"))
	if f.String("out") == "" || err != nil {
		return nil, asset.Usagef("give --out FILE: where the dump of the selected tables goes")
	}
	if err := pgdrill.CheckOut(out); err != nil {
		return nil, err
	}
	s := r.Snapshot
	if tm := f.String("time"); tm != "" {
		if r.SnapshotID != "" {
			return nil, asset.Usagef("give --time or --snapshot, not both")
		}
		at, err := asset.ParseTime(tm)
		if err != nil {
			return nil, err
		}
		if s, err = dumpBefore(ctx, r.Repo, a.Name, at); err != nil {
			return nil, err
		}
	}
	info, err := SnapshotInfo(s)
	if err != nil {
		return nil, err
	}
	db, err := pickDatabase(s, info, f.String("database"))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	host, err := pgdrill.NewScratch(f.String("work-dir"), f.String("run-as"), r.Log)
	if err != nil {
		return nil, err
	}
	defer host.Close()
	bin, err := pgbin.Find(ctx, info.ServerVersionNum/10000)
	if err != nil {
		return nil, err
	}
	pgRestore, _, err := restoreTools(ctx, server{VersionNum: info.ServerVersionNum}, info, false)
	if err != nil {
		return nil, err
	}
	idx, err := r.Repo.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	nodes, err := treeFiles(ctx, r.Repo, idx, s, db.File)
	if err != nil {
		return nil, err
	}
	node := nodes[db.File]
	where := fmt.Sprintf("of dump %s (snapshot %s, %s)", DumpName(s), s.ID.Short(), s.StartTime.Format(lifeboat.TimeLayout))

	// The table of contents is all pg_restore -l reads: only that much
	// of the archive is fetched to check the names.
	toc := filepath.Join(host.WorkDir(), "toc.dump")
	if err := writePrefix(ctx, r.Repo, idx, node, toc, db.TOCEnd, r.Workers); err != nil {
		return nil, err
	}
	list, err := listTOC(ctx, pgRestore, toc)
	if err != nil {
		return nil, err
	}
	if err := checkTOC(list, sel, db.Name, where); err != nil {
		return nil, err
	}
	os.Remove(toc)

	file := filepath.Join(host.WorkDir(), "database.dump")
	if err := writeNode(ctx, r.Repo, idx, node, file, r.Workers); err != nil {
		return nil, err
	}
	// Opened before the work directory is handed to the server's user,
	// who could otherwise put something else under its name.
	in, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	as, err := pgbin.RunAs(host.RunAs(), "")
	if err != nil {
		return nil, fmt.Errorf("%w (--run-as names the OS user)", err)
	}
	srv, err := pgdrill.FreshCluster(ctx, host, bin, as)
	if err != nil {
		return nil, err
	}
	schemas := slices.Clone(sel.Schemas)
	for _, t := range sel.Tables {
		if !slices.Contains(schemas, t.Schema) {
			schemas = append(schemas, t.Schema)
		}
	}
	if err := loadSchemas(ctx, srv, pgRestore, in, db.Name, schemas); err != nil {
		return nil, err
	}
	in.Close()
	os.Remove(file)
	if err := sel.Check(ctx, srv, db.Name, where); err != nil {
		return nil, err
	}
	n, err := sel.Dump(ctx, srv, db.Name, out)
	if err != nil {
		return nil, err
	}
	return &asset.Restored{Snapshot: s, Lines: []string{
		fmt.Sprintf("restored %s of database %s %s to %s: %s (pg_dump custom format) in %s",
			sel, db.Name, where, out, asset.HumanBytes(n), time.Since(start).Round(time.Millisecond)),
		fmt.Sprintf("load it with: pg_restore --dbname DB --no-owner %s (into a scratch database or schema first; see docs/pgdump.md)", out),
	}}, nil
}

// loadSchemas makes database db on srv and loads the schemas of the
// archive in into it with pg_restore --schema.
func loadSchemas(ctx context.Context, srv *pgbin.Server, pgRestore tool, in *os.File, db string, schemas []string) error {
	if err := srv.CreateDatabase(ctx, db); err != nil {
		return fmt.Errorf("the throwaway server: %w", err)
	}
	// pg_restore --schema leaves the CREATE SCHEMA out: the schemas are
	// made first, empty, as the restoring superuser.
	conn, err := srv.Connect(ctx, db)
	if err != nil {
		return fmt.Errorf("the throwaway server: %w", err)
	}
	defer conn.Close(context.Background())
	for _, sc := range schemas {
		if _, err := conn.Exec(ctx, "create schema if not exists "+pgdrill.QuoteIdent(sc)); err != nil {
			return fmt.Errorf("the throwaway server: create schema %s: %w", sc, err)
		}
	}
	args := []string{"--no-owner", "--no-privileges", "--exit-on-error", "--dbname", srv.DSN(db)}
	for _, sc := range schemas {
		args = append(args, "--schema", sc)
	}
	// pg_restore runs as the server's user, who cannot open a file of
	// root's: it reads the archive on standard input.
	cmd := srv.OS.Command(ctx, pgRestore.Path, args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = bufio.NewReaderSize(in, 1<<20), &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pg_restore of schema %s into the throwaway server: %v: %s", strings.Join(schemas, ", "), err,
			firstLines(stderr.String(), 3))
	}
	return nil
}

// dumpBefore is the newest dump of the asset taken at or before at: a
// dump holds the data as it was when pg_dump began.
func dumpBefore(ctx context.Context, r *repo.Repository, assetName string, at time.Time) (*repo.Snapshot, error) {
	snaps, err := r.Snapshots(ctx, assetName)
	if err != nil {
		return nil, err
	}
	var best *repo.Snapshot
	for _, s := range snaps {
		if !s.StartTime.After(at) && (best == nil || s.StartTime.After(best.StartTime)) {
			best = s
		}
	}
	if best == nil {
		return nil, asset.Usagef("asset %s has no dump taken at or before %s", assetName, at.Format(lifeboat.TimeLayout))
	}
	return best, nil
}

// errEnough stops a stream once the prefix wanted is written.
var errEnough = errors.New("enough")

// prefixWriter writes the first n bytes it is given, then stops.
type prefixWriter struct {
	w *bufio.Writer
	n int64
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > p.n {
		p.w.Write(b[:p.n])
		p.n = 0
		return 0, errEnough
	}
	p.n -= int64(len(b))
	return p.w.Write(b)
}

// writePrefix writes the first n bytes of a snapshot's file (all of it
// when n is 0: an older snapshot that did not record where its table of
// contents ends).
func writePrefix(ctx context.Context, r *repo.Repository, idx *repo.Index, node *repo.Node, path string, n int64, workers int) error {
	if n <= 0 {
		return writeNode(ctx, r, idx, node, path, workers)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scratch copy of the dump's table of contents: %w", err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = streamFile(ctx, r, idx, node, &prefixWriter{w: bw, n: n}, workers)
	if errors.Is(err, errEnough) {
		err = nil
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("read the dump's table of contents from the repository: %w", err)
	}
	return nil
}

// tocEntry is one line of pg_restore -l: its description (TABLE,
// TABLE DATA, SCHEMA, ...) and what follows it (namespace, tag, owner).
type tocEntry struct{ desc, rest string }

// listTOC runs pg_restore -l on a dump.
func listTOC(ctx context.Context, pgRestore tool, file string) ([]tocEntry, error) {
	cmd := (*pgbin.User)(nil).Command(ctx, pgRestore.Path, "--list", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("pg_restore --list: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	var list []tocEntry
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		// "<id>; <catalog oid> <oid> <desc> <namespace> <tag> <owner>"
		_, rest, ok := strings.Cut(line, "; ")
		if !ok {
			continue
		}
		fields := strings.SplitN(rest, " ", 3)
		if len(fields) < 3 {
			continue
		}
		rest = fields[2]
		for _, d := range tocDescs {
			if strings.HasPrefix(rest, d+" ") {
				list = append(list, tocEntry{desc: d, rest: strings.TrimPrefix(rest, d+" ")})
				break
			}
		}
	}
	return list, nil
}

// tocDescs are the entry descriptions a selection looks for, longest
// first so "TABLE DATA" is not read as "TABLE".
var tocDescs = []string{"MATERIALIZED VIEW", "FOREIGN TABLE", "TABLE DATA", "SEQUENCE", "SCHEMA", "TABLE", "VIEW"}

// checkTOC refuses, naming each, the tables and schemas the dump does
// not hold.
func checkTOC(list []tocEntry, sel pgdrill.Selection, db, where string) error {
	has := func(pred func(tocEntry) bool) bool { return slices.ContainsFunc(list, pred) }
	var missing []string
	for _, t := range sel.Tables {
		if !has(func(e tocEntry) bool {
			return e.desc != "SCHEMA" && e.desc != "TABLE DATA" && (e.rest == t.Schema+" "+t.Name || strings.HasPrefix(e.rest, t.Schema+" "+t.Name+" "))
		}) {
			missing = append(missing, "table "+t.String())
		}
	}
	for _, sc := range sel.Schemas {
		if !has(func(e tocEntry) bool {
			return (e.desc == "SCHEMA" && (e.rest == "- "+sc || strings.HasPrefix(e.rest, "- "+sc+" "))) || strings.HasPrefix(e.rest, sc+" ")
		}) {
			missing = append(missing, "schema "+pgdrill.QuoteIdent(sc))
		}
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return asset.Usagef("%s does not exist in database %q %s", missing[0], db, where)
	}
	return asset.Usagef("%s do not exist in database %q %s", strings.Join(missing, ", "), db, where)
}

// firstLines joins the first n lines of s with " | ".
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, " | ")
}
