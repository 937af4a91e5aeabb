package pgdrill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// Relation is a table (or view, sequence, ...) named with its schema.
type Relation struct{ Schema, Name string }

func (r Relation) String() string { return quoteIdent(r.Schema) + "." + quoteIdent(r.Name) }

// Selection is what a table-level restore takes out of a database: the
// named tables and the whole of the named schemas.
type Selection struct {
	Tables  []Relation
	Schemas []string
}

// String names what is selected: "table "a"."b" and schema "c"".
func (s Selection) String() string {
	var parts []string
	for _, t := range s.Tables {
		parts = append(parts, "table "+t.String())
	}
	for _, sc := range s.Schemas {
		parts = append(parts, "schema "+quoteIdent(sc))
	}
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// Empty says nothing was selected.
func (s Selection) Empty() bool { return len(s.Tables) == 0 && len(s.Schemas) == 0 }

// ParseSelection reads --table schema.table and --schema S values as SQL
// names: unquoted parts are folded to lower case, "Quoted" ones kept as
// written (as psql and pg_dump read them, without their wildcards).
func ParseSelection(tables, schemas []string) (Selection, error) {
	var sel Selection
	for _, t := range tables {
		parts, err := splitIdents(t)
		if err != nil || len(parts) != 2 {
			return sel, asset.Usagef("--table %q: want schema.table (quote a name with capitals or dots: '\"Sales\".\"Orders\"')", t)
		}
		sel.Tables = append(sel.Tables, Relation{Schema: parts[0], Name: parts[1]})
	}
	for _, s := range schemas {
		parts, err := splitIdents(s)
		if err != nil || len(parts) != 1 {
			return sel, asset.Usagef("--schema %q: want one schema name", s)
		}
		sel.Schemas = append(sel.Schemas, parts[0])
	}
	return sel, nil
}

// splitIdents splits a dotted SQL name into its identifiers.
func splitIdents(s string) ([]string, error) {
	var out []string
	for i := 0; ; {
		var id strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			for {
				if i >= len(s) {
					return nil, errors.New("unterminated quote")
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						id.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				id.WriteByte(s[i])
				i++
			}
		} else {
			j := strings.IndexAny(s[i:], `."`)
			if j < 0 {
				j = len(s) - i
			}
			id.WriteString(strings.ToLower(s[i : i+j]))
			i += j
		}
		if id.Len() == 0 {
			return nil, errors.New("empty name")
		}
		out = append(out, id.String())
		if i == len(s) {
			return out, nil
		}
		if s[i] != '.' {
			return nil, errors.New("unexpected quote")
		}
		i++
	}
}

// QuoteIdent quotes a name for SQL and pg_dump's patterns.
func QuoteIdent(s string) string { return quoteIdent(s) }

// quoteIdent quotes a name for SQL and for pg_dump's patterns, where the
// quotes also turn off the wildcards.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// AsSuperuser makes srv's clients connect as the cluster's bootstrap
// superuser (the role of OID 10, whatever it is called): the role of the
// asset's DSN, which srv.User names, may lack the rights to read every
// table or to change the catalog of a restored copy, and the private
// socket trusts any role.
func AsSuperuser(ctx context.Context, srv *pgbin.Server) error {
	conn, err := srv.Connect(ctx, "template1")
	if err != nil {
		return fmt.Errorf("the restored server: %w", err)
	}
	defer conn.Close(context.Background())
	var name string
	if err := conn.QueryRow(ctx, "select rolname from pg_catalog.pg_roles where oid = 10").Scan(&name); err != nil {
		return fmt.Errorf("the restored server: find its superuser: %w", err)
	}
	srv.User = name
	return nil
}

// CheckOut refuses an --out that exists or whose directory does not: the
// dump must not replace a file, and must fail before any work is done.
func CheckOut(out string) error {
	if out == "" {
		return asset.Usagef("give --out FILE: where the dump of the selected tables goes")
	}
	if _, err := os.Lstat(out); err == nil {
		return asset.Usagef("--out %s exists: choose a new file", out)
	}
	if fi, err := os.Stat(filepath.Dir(out)); err != nil || !fi.IsDir() {
		return asset.Usagef("--out %s: directory %s does not exist", out, filepath.Dir(out))
	}
	if _, err := os.Lstat(out + ".tmp"); err == nil {
		return asset.Usagef("--out %s: %s.tmp exists (left by an interrupted restore?): remove it first", out, out)
	}
	return nil
}

// Check refuses, naming each, the database, tables and schemas that the
// server srv does not hold; where says which state of the data it is
// ("at time ...").
func (s Selection) Check(ctx context.Context, srv *pgbin.Server, db, where string) error {
	conn, err := srv.Connect(ctx, db)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" {
			return asset.Usagef("database %q does not exist %s", db, where)
		}
		return err
	}
	defer conn.Close(context.Background())
	var missing []string
	for _, t := range s.Tables {
		var n int
		err := conn.QueryRow(ctx, `select count(*) from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
			where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')`, t.Schema, t.Name).Scan(&n)
		if err != nil {
			return fmt.Errorf("look up table %s: %w", t, err)
		}
		if n == 0 {
			missing = append(missing, "table "+t.String())
		}
	}
	for _, sc := range s.Schemas {
		var n int
		if err := conn.QueryRow(ctx, `select count(*) from pg_catalog.pg_namespace where nspname = $1`, sc).Scan(&n); err != nil {
			return fmt.Errorf("look up schema %s: %w", quoteIdent(sc), err)
		}
		if n == 0 {
			missing = append(missing, "schema "+quoteIdent(sc))
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

// Dump writes the selection of database db on srv to out in pg_dump's
// custom format, through out.tmp, synced and then linked to out (which
// must not exist), so out is there only once it is whole. It returns the
// size written.
func (s Selection) Dump(ctx context.Context, srv *pgbin.Server, db, out string) (int64, error) {
	args := []string{"--format=custom", "--no-password", "--strict-names", "--dbname", db}
	args = append(args, srv.ClientArgs()...)
	for _, t := range s.Tables {
		args = append(args, "--table", t.String())
	}
	for _, sc := range s.Schemas {
		args = append(args, "--schema", quoteIdent(sc))
	}
	tmp := out + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// pg_dump runs as the server's user, who may not reach out's
	// directory: it writes to a pipe into the file this process made.
	cmd := srv.Command(ctx, "pg_dump", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return 0, fmt.Errorf("pg_dump of %s: %s", db, firstLines(msg, 3))
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("sync %s: %w", tmp, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", tmp, err)
	}
	done = true
	// link(2), unlike rename(2), refuses a name that appeared meanwhile.
	if err := os.Link(tmp, out); err != nil {
		os.Remove(tmp)
		if errors.Is(err, fs.ErrExist) {
			return 0, fmt.Errorf("--out %s appeared while the restore ran: the dump is not written", out)
		}
		return 0, fmt.Errorf("publish %s: %w", out, err)
	}
	if err := os.Remove(tmp); err != nil {
		return 0, fmt.Errorf("remove %s: %w", tmp, err)
	}
	if err := durable.SyncDir(filepath.Dir(out)); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
