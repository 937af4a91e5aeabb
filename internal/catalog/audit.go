package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
)

// The audit trail is kept here because the catalog is already this
// host's durable, locked, crash-safe record (WAL mode, synchronous FULL,
// one immediate transaction per write), read by the same commands; the
// chain, not the file, is what makes it tamper-evident, and the seals in
// the repositories are what catch a file rolled back or replaced.

// AuditChain is the id of this catalog's chain, made on first use.
func (c *Catalog) AuditChain(ctx context.Context) (string, error) {
	if _, err := c.db.ExecContext(ctx, `INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('chain', ?)`, audit.NewChainID()); err != nil {
		return "", fmt.Errorf("catalog: audit chain: %w", err)
	}
	var id string
	if err := c.db.QueryRowContext(ctx, `SELECT value FROM audit_meta WHERE key = 'chain'`).Scan(&id); err != nil {
		return "", fmt.Errorf("catalog: audit chain: %w", err)
	}
	return id, nil
}

// AppendAudit appends to the chain in one transaction, which holds the
// database's write lock from its start: build gets the chain's id, last
// sequence number and hash (0 for an empty chain) and returns the records
// that follow them, which are stored and returned.
func (c *Catalog) AppendAudit(ctx context.Context, build func(chain string, last uint64, lastHash audit.Hash) ([]audit.Record, error)) ([]audit.Record, error) {
	chain, err := c.AuditChain(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("catalog: audit: %w", err)
	}
	defer tx.Rollback()
	var last uint64
	var hash []byte
	err = tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&last, &hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("catalog: audit: %w", err)
	}
	var lastHash audit.Hash
	copy(lastHash[:], hash)
	recs, err := build(chain, last, lastHash)
	if err != nil {
		return nil, err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (seq, time, body, hash) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("catalog: audit: %w", err)
	}
	defer stmt.Close()
	for i := range recs {
		r := &recs[i]
		if _, err := stmt.ExecContext(ctx, r.Seq, encodeTime(r.Time), r.Body, r.Hash[:]); err != nil {
			return nil, fmt.Errorf("catalog: record audit event %d: %w", r.Seq, err)
		}
		if err := c.queue(ctx, tx, OutboxAudit, fmt.Sprint(r.Seq), OutboxAuditRecord{Chain: chain, Seq: r.Seq, Time: r.Time, Body: r.Body, Hash: r.Hash[:]}); err != nil {
			return nil, fmt.Errorf("catalog: record audit event %d: %w", r.Seq, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("catalog: audit: %w", err)
	}
	return recs, nil
}

// AuditFilter selects events.
type AuditFilter struct {
	From  uint64    // the first sequence number; 0 and 1 from the start
	To    uint64    // the last; 0 for no end
	Since time.Time // zero for any time
}

// AuditRecords calls fn with each event selected, in the order of their
// sequence numbers as stored (what verify walks). The record and its body
// are valid only during the call.
func (c *Catalog) AuditRecords(ctx context.Context, f AuditFilter, fn func(*audit.Record) error) error {
	q := `SELECT seq, time, body, hash FROM audit_events WHERE seq >= ?`
	args := []any{f.From}
	if f.To > 0 {
		q += ` AND seq <= ?`
		args = append(args, f.To)
	}
	if !f.Since.IsZero() {
		q += ` AND time >= ?`
		args = append(args, encodeTime(f.Since))
	}
	// A year of events is a database of a GiB or so read end to end:
	// mapped, it is read without a system call per page.
	c.db.ExecContext(ctx, `PRAGMA mmap_size = 4294967296`)
	rows, err := c.db.QueryContext(ctx, q+` ORDER BY seq`, args...)
	if err != nil {
		return fmt.Errorf("catalog: audit events: %w", err)
	}
	defer rows.Close()
	var r audit.Record
	// The body and hash are read in place, valid until the next row: fn
	// copies what it keeps (two million events are verified in one pass).
	var t sql.NullString
	var body, hash sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&r.Seq, &t, &body, &hash); err != nil {
			return fmt.Errorf("catalog: audit events: %w", err)
		}
		r.Time, _ = decodeTime(t)
		r.Body = body
		r.Hash = audit.Hash{}
		copy(r.Hash[:], hash)
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog: audit events: %w", err)
	}
	return nil
}

// AuditHead is the chain's last sequence number and hash (0 when empty).
func (c *Catalog) AuditHead(ctx context.Context) (uint64, audit.Hash, error) {
	var last uint64
	var hash []byte
	var h audit.Hash
	err := c.db.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&last, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, h, nil
	}
	if err != nil {
		return 0, h, fmt.Errorf("catalog: audit: %w", err)
	}
	copy(h[:], hash)
	return last, h, nil
}

// AuditSealed is the last event sealed into the repository with this id
// (0 for none).
func (c *Catalog) AuditSealed(ctx context.Context, repository string) (uint64, error) {
	var seq uint64
	err := c.db.QueryRowContext(ctx, `SELECT seq FROM audit_seals WHERE repository = ?`, repository).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("catalog: audit seals: %w", err)
	}
	return seq, nil
}

// SetAuditSealed records that the chain is sealed up to seq into the
// repository with this id; it never moves back.
func (c *Catalog) SetAuditSealed(ctx context.Context, repository string, seq uint64, at time.Time) error {
	_, err := c.db.ExecContext(ctx, `INSERT INTO audit_seals (repository, seq, sealed) VALUES (?, ?, ?)
		ON CONFLICT (repository) DO UPDATE SET seq = max(seq, excluded.seq), sealed = excluded.sealed`, repository, seq, encodeTime(at))
	if err != nil {
		return fmt.Errorf("catalog: audit seals: %w", err)
	}
	return nil
}
