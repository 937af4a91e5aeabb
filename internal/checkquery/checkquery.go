// Package checkquery runs a validation query of the policy (a drill's
// check) and returns its single value as text. The same code runs the
// query when a backup records the value and when a drill compares the
// restored copy with it, so both see the value written the same way.
package checkquery

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// ErrShape is returned (wrapped) when a query does not return exactly one
// row of one column.
var ErrShape = errors.New("a check returns one row of one column")

// Postgres runs query through the simple protocol, so the value comes back
// as PostgreSQL writes it ("t" for true, numerics in full), on q: a
// connection or a transaction.
func Postgres(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, query string) (value string, null bool, err error) {
	rows, err := q.Query(ctx, query, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		return "", false, err
	}
	defer rows.Close()
	if n := len(rows.FieldDescriptions()); n != 1 {
		return "", false, fmt.Errorf("the query returns %d columns: %w", n, ErrShape)
	}
	var v *string
	got := 0
	for rows.Next() {
		got++
		if got == 1 {
			if raw := rows.RawValues()[0]; raw != nil {
				s := string(raw)
				v = &s
			}
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, err
	}
	return result(got, v)
}

// SQLite runs query on db; values are written as database/sql converts
// them to text.
func SQLite(ctx context.Context, db *sql.DB, query string) (value string, null bool, err error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return "", false, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return "", false, err
	}
	if len(cols) != 1 {
		return "", false, fmt.Errorf("the query returns %d columns: %w", len(cols), ErrShape)
	}
	var v *string
	got := 0
	for rows.Next() {
		got++
		if got == 1 {
			var ns sql.NullString
			if err := rows.Scan(&ns); err != nil {
				return "", false, err
			}
			if ns.Valid {
				v = &ns.String
			}
		}
	}
	if err := rows.Err(); err != nil {
		return "", false, err
	}
	return result(got, v)
}

func result(rows int, v *string) (string, bool, error) {
	switch {
	case rows == 0:
		return "", false, fmt.Errorf("the query returned no row: %w", ErrShape)
	case rows > 1:
		return "", false, fmt.Errorf("the query returned %d rows: %w", rows, ErrShape)
	case v == nil:
		return "", true, nil
	}
	return *v, false, nil
}

// Recorded is what a backup recorded of its checks (in the snapshot's
// details, under these JSON names): each check's value, or why it could
// not be taken.
type Recorded struct {
	Checks      map[string]string `json:"checks,omitempty"`
	CheckErrors map[string]string `json:"check_errors,omitempty"`
}

// Record stores the outcome of one check's query.
func (r *Recorded) Record(name, value string, null bool, err error) {
	switch {
	case err != nil:
		if r.CheckErrors == nil {
			r.CheckErrors = map[string]string{}
		}
		r.CheckErrors[name] = err.Error()
	case null:
		if r.CheckErrors == nil {
			r.CheckErrors = map[string]string{}
		}
		r.CheckErrors[name] = "the query returned NULL"
	default:
		if r.Checks == nil {
			r.Checks = map[string]string{}
		}
		r.Checks[name] = value
	}
}

// Query is a check whose value a backup records.
type Query struct {
	Name string
	SQL  string
	// Database is where it runs (pg_dump assets); "" means the first
	// database dumped.
	Database string
}

// RecordedChecks are the asset's drill checks that compare with the value
// at backup time ("= recorded"): the backup takes their values.
func RecordedChecks(a *policy.Asset) []Query {
	if a.Drill == nil {
		return nil
	}
	var qs []Query
	for _, c := range a.Drill.Checks {
		if c.Expect.Kind == policy.ExpectRecorded {
			qs = append(qs, Query{Name: c.Name, SQL: c.SQL, Database: c.Database})
		}
	}
	return qs
}
