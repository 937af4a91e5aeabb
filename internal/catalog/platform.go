package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// RecordPlatformDrill stores a platform exercise's report; its member
// drills are recorded by RecordDrill. A report with the same ID is
// refused rather than overwritten.
func (c *Catalog) RecordPlatformDrill(ctx context.Context, r *evidence.PlatformReport) error {
	doc, err := r.Marshal()
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if _, err := c.db.ExecContext(ctx, `INSERT INTO platform_drills (id, grp, started, passed, report) VALUES (?, ?, ?, ?, ?)`,
		r.ID, r.Group, encodeTime(r.Started), r.Passed, string(doc)); err != nil {
		return fmt.Errorf("catalog: record platform exercise %s: %w", r.ID, err)
	}
	return nil
}

// PlatformDrills lists platform exercises that started at or after since
// (zero: all), newest first.
func (c *Catalog) PlatformDrills(ctx context.Context, since time.Time) ([]*evidence.PlatformReport, error) {
	query := `SELECT id, report FROM platform_drills`
	var args []any
	if !since.IsZero() {
		query += ` WHERE started >= ?`
		args = append(args, encodeTime(since))
	}
	rows, err := c.db.QueryContext(ctx, query+` ORDER BY started DESC, id DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("catalog: list platform exercises: %w", err)
	}
	defer rows.Close()
	var out []*evidence.PlatformReport
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, fmt.Errorf("catalog: list platform exercises: %w", err)
		}
		r, err := evidence.UnmarshalPlatform([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("catalog: platform exercise %s: %w", id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: list platform exercises: %w", err)
	}
	return out, nil
}
