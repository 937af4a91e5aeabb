package pgdump

import (
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookSteps restores the dump into a new, empty database on the server
// libpq's environment points at (PGHOST, PGPORT, PGUSER: the server the
// platform is brought back on), never into the database dumped; the checks
// are the drill's queries, run there with psql.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	q := asset.ShellQuote
	db, only := a.Name+"_restored", ""
	if c, err := configOf(a); err == nil && len(c.Databases) > 1 {
		// One restore per database: the runbook shows the first, the
		// others go the same way with their names.
		only = " --database " + q(c.Databases[0])
		db = c.Databases[0] + "_restored"
	}
	psql := func(_, sql string) string { return fmt.Sprintf("psql -d %s -XAtc %s", q(db), q(sql)) }
	return asset.RunbookSteps{
		Setup:  []asset.RunbookLine{{What: "an empty database to restore into (PGHOST, PGPORT and PGUSER name the server)", Line: "createdb -T template0 " + q(db)}},
		Target: "--to-dsn " + q("dbname="+db) + only,
		Checks: append([]asset.RunbookLine{{What: "tables that came back", Line: psql("", "select count(*) from information_schema.tables where table_schema not in ('pg_catalog', 'information_schema')")}},
			asset.ValidationLines(a, psql)...),
	}
}
