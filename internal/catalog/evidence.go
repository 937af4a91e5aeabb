package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// RecordDrill stores a drill report. Reports are history: a report with
// the same ID is refused rather than overwritten.
func (c *Catalog) RecordDrill(ctx context.Context, r *evidence.DrillReport) error {
	doc, err := r.Marshal()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	err = c.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO drills (id, asset, started, passed, report) VALUES (?, ?, ?, ?, ?)`,
			r.ID, r.Asset, encodeTime(r.Started), r.Passed, string(doc)); err != nil {
			return err
		}
		return c.queue(ctx, tx, OutboxDrill, r.ID, OutboxDrillRecord{ID: r.ID, Asset: r.Asset, Started: r.Started, Passed: r.Passed, Report: doc})
	})
	if err != nil {
		return fmt.Errorf("catalog: record drill %s of %s: %w", r.ID, r.Asset, err)
	}
	return nil
}

// DrillFilter selects drill reports.
type DrillFilter struct {
	Asset string    // "" for every asset
	Since time.Time // zero for all
	Limit int       // 0 for no limit
}

// Drills lists drill reports, newest first.
func (c *Catalog) Drills(ctx context.Context, f DrillFilter) ([]*evidence.DrillReport, error) {
	query := `SELECT id, report FROM drills WHERE 1 = 1`
	var args []any
	if f.Asset != "" {
		query += " AND asset = ?"
		args = append(args, f.Asset)
	}
	if !f.Since.IsZero() {
		query += " AND started >= ?"
		args = append(args, encodeTime(f.Since))
	}
	query += " ORDER BY started DESC, id DESC"
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := c.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: list drills: %w", err)
	}
	defer rows.Close()
	var out []*evidence.DrillReport
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, fmt.Errorf("catalog: list drills: %w", err)
		}
		r, err := evidence.Unmarshal([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("catalog: drill %s: %w", id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: list drills: %w", err)
	}
	return out, nil
}

// Verify is one run of lifeboat verify against a repository.
type Verify struct {
	Repository string
	Start, End time.Time
	OK         bool
	Error      string // why it failed, on one line
	Objects    int64  // objects read and checked
}

// RecordVerify stores the outcome of a verify.
func (c *Catalog) RecordVerify(ctx context.Context, v Verify) error {
	err := c.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO verifies (repository, started, ended, ok, error, objects) VALUES (?, ?, ?, ?, ?, ?)`,
			v.Repository, encodeTime(v.Start), encodeTime(v.End), v.OK, v.Error, v.Objects)
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		if err != nil {
			return err
		}
		return c.queue(ctx, tx, OutboxVerify, fmt.Sprint(id), OutboxVerifyRecord{ID: id, Verify: v})
	})
	if err != nil {
		return fmt.Errorf("catalog: record verify of %s: %w", v.Repository, err)
	}
	return nil
}

// LastVerify returns the newest verify of each repository.
func (c *Catalog) LastVerify(ctx context.Context) (map[string]Verify, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT repository, started, ended, ok, error, objects FROM (
		SELECT *, row_number() OVER (PARTITION BY repository ORDER BY started DESC, id DESC) AS n FROM verifies) WHERE n = 1`)
	if err != nil {
		return nil, fmt.Errorf("catalog: last verifies: %w", err)
	}
	defer rows.Close()
	out := map[string]Verify{}
	for rows.Next() {
		var v Verify
		var start, end sql.NullString
		if err := rows.Scan(&v.Repository, &start, &end, &v.OK, &v.Error, &v.Objects); err != nil {
			return nil, fmt.Errorf("catalog: last verifies: %w", err)
		}
		if v.Start, err = decodeTime(start); err == nil {
			v.End, err = decodeTime(end)
		}
		if err != nil {
			return nil, fmt.Errorf("catalog: verify of %s: %w", v.Repository, err)
		}
		out[v.Repository] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: last verifies: %w", err)
	}
	return out, nil
}
