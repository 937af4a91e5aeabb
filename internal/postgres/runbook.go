package postgres

import (
	"fmt"
	"path/filepath"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookPort is the port the runbook starts a restored cluster on: not
// the usual 5432, so that a restore on the production host cannot be
// mistaken for, or collide with, the server it replaces.
const RunbookPort = 54329

// RunbookSteps restores into a data directory under root, starts it on
// RunbookPort with its socket in the directory beside it (recovery
// replays the archived WAL through lifeboat wal-fetch and promotes), and
// checks it as a drill does: pg_amcheck, then the drill's queries. The
// restore turns archiving off in the copy, as a drill does.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	dir := filepath.Join(root, a.Name)
	sock := filepath.Join(root, a.Name+".sock")
	q := asset.ShellQuote
	db := "postgres"
	if c, err := ConfigOf(a); err == nil {
		if pc, err := pgconn.ParseConfig(c.DSN); err == nil && pc.Database != "" {
			db = pc.Database
		}
	}
	conn := fmt.Sprintf("-h %s -p %d", q(sock), RunbookPort)
	psql := func(database, sql string) string {
		if database == "" {
			database = db
		}
		return fmt.Sprintf("psql %s -d %s -XAtc %s", conn, q(database), q(sql))
	}
	return asset.RunbookSteps{
		// A scratch copy must not archive into the asset's repository
		// while production may still run; archiving comes back on when it
		// takes over (the last step after).
		Target: "--to " + q(dir) + " --archive-off",
		After: []asset.RunbookLine{
			{What: "make the socket directory (as the user that owns the restored files, e.g. postgres)", Line: "mkdir -p " + q(sock)},
			{What: "start the restored cluster; it replays the archived WAL up to the target, then promotes (-w waits until it accepts connections)",
				Line: fmt.Sprintf("pg_ctl -D %s -l %s -w -t 3600 -o %s start", q(dir), q(dir+".log"),
					q(fmt.Sprintf("-p %d -c listen_addresses= -c unix_socket_directories=%s", RunbookPort, sock)))},
			{What: "only once the checks below pass and this copy takes over: archive again (then restart it on its production port)",
				Line: psql("postgres", "alter system set archive_mode = on")},
		},
		Checks: append([]asset.RunbookLine{
			{What: "recovery is over: expect f", Line: psql("", "select pg_is_in_recovery()")},
			{What: "the newest transaction that came back", Line: psql("", "select now(), pg_last_xact_replay_timestamp()")},
			{What: "heap and index structure of every database", Line: fmt.Sprintf("pg_amcheck %s --all", conn)},
		}, asset.ValidationLines(a, psql)...),
	}
}
