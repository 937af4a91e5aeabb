// Package fleet is the shared catalog of a fleet of Lifeboat agents, on
// PostgreSQL (docs/fleet.md): every host's runs, drills, verifies, audit
// events and published asset states, each keyed by the host's name so
// nothing two hosts write collides.
//
// Agents never write here on the path of a backup. Each host's SQLite
// catalog (internal/catalog) stays its durable record and, opened with an
// outbox, queues every record in the transaction that writes it; the
// Shipper sends the queue in order, one PostgreSQL transaction per batch
// that upserts the records and moves the host's shipped_seq, which is
// where a shipper resumes. A catalog that is down only delays the fleet's
// view: nothing is lost or doubled.
//
// The schema is versioned in schema_migrations and brought up to date by
// Migrate under a transaction-level advisory lock, so agents starting
// together migrate it once.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultConnectTimeout bounds a connection attempt when the URL does not
// set connect_timeout: an agent must notice a catalog that is gone, not
// hang on it.
const DefaultConnectTimeout = 10 * time.Second

// Store is an open fleet catalog: a pool of connections, this agent's
// host name, and whether the schema is known to be current.
type Store struct {
	pool    *pgxpool.Pool
	host    string
	version string

	mu       sync.Mutex
	migrated bool
}

// Config says which catalog to open and who this agent is.
type Config struct {
	// URL is the catalog's connection string (postgres://… or libpq's
	// key=value form); TLS as its sslmode says.
	URL string
	// Host is this agent's name in the fleet: the key of everything it
	// writes.
	Host string
	// Version is this agent's Lifeboat version, shown in hosts.
	Version string
	// MaxConns bounds the pool (default 4).
	MaxConns int32
}

// New prepares a Store without connecting: the first statement connects,
// so an agent starts while its catalog is down. Call Migrate (or use
// Open) before reading.
func New(cfg Config) (*Store, error) {
	if cfg.Host == "" {
		return nil, errors.New("fleet catalog: no host name for this agent")
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's message can quote the URL, password and all.
		return nil, fmt.Errorf("fleet catalog: the connection URL does not parse (%s)", redactParseError(err))
	}
	if !strings.Contains(cfg.URL, "connect_timeout") {
		pc.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 4
	}
	pc.MinConns = 0
	pc.ConnConfig.RuntimeParams["application_name"] = "lifeboat " + cfg.Host
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: %w", err)
	}
	return &Store{pool: pool, host: cfg.Host, version: cfg.Version}, nil
}

// Open is New and Migrate: a Store ready to read and write.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// redactParseError keeps pgx's reason and drops anything quoted after
// it, where the connection string would appear.
func redactParseError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "cannot parse `"); i >= 0 {
		if j := strings.LastIndex(msg, "`: "); j > i {
			return "cannot parse: " + msg[j+3:]
		}
		return "cannot parse"
	}
	return msg
}

// Host is this agent's name in the fleet.
func (s *Store) Host() string { return s.host }

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool is the connection pool, for the fleet's other users in this
// package's callers (leadership holds a connection of its own).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Migrate brings the schema up to date, once per Store: every agent
// calls it on start, under an advisory lock taken in the transaction, so
// the first migrates and the others find it done. A schema newer than
// this build is refused rather than misread.
func (s *Store) Migrate(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.migrated {
		return nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY,
			applied timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var v int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
			return err
		}
		if v > len(migrations) {
			return fmt.Errorf("the schema is at version %d; this lifeboat knows up to %d: upgrade lifeboat", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v+1); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO hosts (host, first_seen, last_seen, version) VALUES ($1, now(), now(), $2)
			ON CONFLICT (host) DO UPDATE SET last_seen = now(), version = coalesce(nullif(excluded.version, ''), hosts.version)`, s.host, s.version)
		return err
	})
	if err != nil {
		return fmt.Errorf("fleet catalog: %w", err)
	}
	s.migrated = true
	return nil
}

// SchemaVersion is the schema version this build writes.
func SchemaVersion() int { return len(migrations) }
