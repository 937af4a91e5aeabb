package pgdump

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Every statement this package sends itself; the dumps and restores are
// pg_dump's, pg_dumpall's, pg_restore's and psql's own.
const sqlServer = `select current_setting('server_version_num')::int, current_setting('server_version'), current_database()`

// server is what a dump or restore needs to know of the server first.
type server struct {
	VersionNum int    // e.g. 150013
	Version    string // e.g. "15.13 (Debian 15.13-1.pgdg120+1)"
	Database   string // the database the connection string leads to
}

func (s server) major() int { return s.VersionNum / 10000 }

// connectTimeout bounds the first connection, so that an unreachable host
// fails a scheduled run instead of hanging it.
const connectTimeout = 30 * time.Second

// probeServer connects with the parameters, asks the server's version and
// database and disconnects. The error names the server without its
// password.
func probeServer(ctx context.Context, p *connParams, shown string) (server, error) {
	var s server
	cfg, err := pgx.ParseConfig(p.String())
	if err != nil {
		return s, fmt.Errorf("connection string %s: %v", shown, err)
	}
	if cfg.ConnectTimeout == 0 || cfg.ConnectTimeout > connectTimeout {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return s, fmt.Errorf("connect to %s: %w", shown, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, sqlServer).Scan(&s.VersionNum, &s.Version, &s.Database); err != nil {
		return s, fmt.Errorf("query server version on %s: %w", shown, err)
	}
	return s, nil
}
