package postgres

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestCatalogWaitsForOlderTransactions: the list is taken only once every
// transaction that had an ID before the mark has ended; one still running
// leaves no list, and once it ends the list holds what it created.
func TestCatalogWaitsForOlderTransactions(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	ctx := context.Background()
	dsn := c.DSN("postgres")
	old, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close(ctx)
	if _, err := old.Exec(ctx, "begin; create schema early; create table early.t (id int)"); err != nil {
		t.Fatal(err)
	}
	c.Psql(t, "postgres", "create view public.v as select 1; create sequence public.s; checkpoint")
	b := &backup{opts: BackupOptions{DSN: dsn, Asset: "db"}, log: slog.New(slog.DiscardHandler)}
	mark := b.catalogMark(ctx)
	if mark == 0 {
		t.Fatal("no mark")
	}
	if cat, reason := queryCatalog(ctx, dsn, mark); cat != nil || !strings.Contains(reason, "still runs") {
		t.Fatalf("a list taken while an older transaction runs: %v, %q", cat, reason)
	}
	if _, err := old.Exec(ctx, "commit"); err != nil {
		t.Fatal(err)
	}
	cat, reason := queryCatalog(ctx, dsn, mark)
	if cat == nil {
		t.Fatalf("no list once the older transaction ended: %s", reason)
	}
	var pg *CatalogDB
	for i, d := range cat.Databases {
		if d.Name == "template0" {
			t.Fatal("template0 is listed")
		}
		if d.Name == "postgres" {
			pg = &cat.Databases[i]
		}
	}
	if pg == nil || !pg.Listed {
		t.Fatalf("database postgres not listed: %+v", cat.Databases)
	}
	if !slices.Contains(pg.Schemas["early"], "t") || !slices.Contains(pg.Schemas["public"], "v") || !slices.Contains(pg.Schemas["public"], "s") {
		t.Fatalf("the list lacks early.t, public.v or public.s: %v", pg.Schemas)
	}
}
