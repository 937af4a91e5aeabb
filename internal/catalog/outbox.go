package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// The outbox is how this host's records reach the fleet catalog
// (internal/fleet) without making a backup wait for, or fail on, a
// PostgreSQL server elsewhere: each write appends its record here in the
// transaction that writes it, so a record is queued exactly when it is
// recorded, and a shipper sends the queue in order when it can.

// Outbox record types.
const (
	OutboxRun    = "run"    // payload: Run
	OutboxDrill  = "drill"  // payload: OutboxDrillRecord
	OutboxVerify = "verify" // payload: OutboxVerifyRecord
	OutboxAudit  = "audit"  // payload: OutboxAuditRecord
	OutboxAsset  = "asset"  // payload: whatever Publish was given (fleet.Asset)
)

// OutboxRow is one queued record.
type OutboxRow struct {
	Seq     int64
	Type    string
	Key     string
	Payload json.RawMessage
}

// OutboxDrillRecord is a drill report as queued.
type OutboxDrillRecord struct {
	ID      string          `json:"id"`
	Asset   string          `json:"asset"`
	Started time.Time       `json:"started"`
	Passed  bool            `json:"passed"`
	Report  json.RawMessage `json:"report"`
}

// OutboxVerifyRecord is a verify as queued.
type OutboxVerifyRecord struct {
	ID int64 `json:"id"`
	Verify
}

// OutboxAuditRecord is an audit event as queued.
type OutboxAuditRecord struct {
	Chain string    `json:"chain"`
	Seq   uint64    `json:"seq"`
	Time  time.Time `json:"time"`
	Body  []byte    `json:"body"`
	Hash  []byte    `json:"hash"`
}

// write runs fn in one transaction: a record and its outbox row commit
// together or not at all.
func (c *Catalog) write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// queue appends a record to the outbox within tx; nothing without an
// outbox.
func (c *Catalog) queue(ctx context.Context, tx *sql.Tx, typ, key string, payload any) error {
	if !c.outbox {
		return nil
	}
	doc, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (type, key, payload) VALUES (?, ?, ?)`, typ, key, string(doc)); err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// queueRuns queues the runs with these ids as they now stand in tx.
func (c *Catalog) queueRuns(ctx context.Context, tx *sql.Tx, ids ...int64) error {
	if !c.outbox {
		return nil
	}
	for _, id := range ids {
		r, err := scanRun(tx.QueryRowContext(ctx, runColumns+` FROM runs WHERE id = ?`, id))
		if err != nil {
			return fmt.Errorf("outbox: run %d: %w", id, err)
		}
		if err := c.queue(ctx, tx, OutboxRun, fmt.Sprint(id), r); err != nil {
			return err
		}
	}
	return nil
}

// Publish queues a record the fleet catalog keeps and this host does not
// (an asset's published state), replacing any of the same type and key
// still queued: only the newest state matters, and an outage does not
// grow the queue by one row per check. Without an outbox it does nothing.
func (c *Catalog) Publish(ctx context.Context, typ, key string, payload any) error {
	if !c.outbox {
		return nil
	}
	err := c.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE type = ? AND key = ?`, typ, key); err != nil {
			return err
		}
		return c.queue(ctx, tx, typ, key, payload)
	})
	if err != nil {
		return fmt.Errorf("catalog: publish %s %s: %w", typ, key, err)
	}
	return nil
}

// OutboxID is this outbox's identity, made on first use: sequence numbers
// mean something only within one outbox, so the fleet catalog keeps
// the id with the last one shipped, and a catalog rebuilt from nothing
// (whose numbers start again) is not taken for one already shipped.
func (c *Catalog) OutboxID(ctx context.Context) (string, error) {
	var b [16]byte
	rand.Read(b[:])
	if _, err := c.db.ExecContext(ctx, `INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('id', ?)`, hex.EncodeToString(b[:])); err != nil {
		return "", fmt.Errorf("catalog: outbox id: %w", err)
	}
	var id string
	if err := c.db.QueryRowContext(ctx, `SELECT value FROM outbox_meta WHERE key = 'id'`).Scan(&id); err != nil {
		return "", fmt.Errorf("catalog: outbox id: %w", err)
	}
	return id, nil
}

// Outbox returns up to limit queued records after seq, in order.
func (c *Catalog) Outbox(ctx context.Context, after int64, limit int) ([]OutboxRow, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT seq, type, key, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("catalog: outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var r OutboxRow
		var doc string
		if err := rows.Scan(&r.Seq, &r.Type, &r.Key, &doc); err != nil {
			return nil, fmt.Errorf("catalog: outbox: %w", err)
		}
		r.Payload = json.RawMessage(doc)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: outbox: %w", err)
	}
	return out, nil
}

// OutboxLen is how many records are queued.
func (c *Catalog) OutboxLen(ctx context.Context) (int, error) {
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		return 0, fmt.Errorf("catalog: outbox: %w", err)
	}
	return n, nil
}

// Shipped deletes the queued records up to seq, which the fleet catalog
// holds.
func (c *Catalog) Shipped(ctx context.Context, seq int64) error {
	if _, err := c.db.ExecContext(ctx, `DELETE FROM outbox WHERE seq <= ?`, seq); err != nil {
		return fmt.Errorf("catalog: outbox: %w", err)
	}
	return nil
}
