package fleet

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// where builds a WHERE clause from conditions, numbering the arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, arg any) {
	w.args = append(w.args, arg)
	w.conds = append(w.conds, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(w.args))))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// limit appends a LIMIT for n > 0.
func (w *where) limit(n int) string {
	if n <= 0 {
		return ""
	}
	w.args = append(w.args, n)
	return fmt.Sprintf(" LIMIT $%d", len(w.args))
}

// Runs lists the runs of every host (f.Hosts: of these), newest first,
// each with its Host.
func (s *Store) Runs(ctx context.Context, f catalog.Filter) ([]catalog.Run, error) {
	var w where
	if len(f.Hosts) > 0 {
		w.add("host = ANY(?)", f.Hosts)
	}
	if len(f.Assets) > 0 {
		w.add("asset = ANY(?)", f.Assets)
	}
	if !f.Since.IsZero() {
		w.add("started >= ?", f.Since)
	}
	q := `SELECT host, id, asset, kind, trigger, slot, started, ended, result, error, snapshot, bytes, bytes_stored,
		output, hook_output FROM runs` + w.String() + " ORDER BY started DESC, id DESC"
	q += w.limit(f.Limit)
	rows, err := s.pool.Query(ctx, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list runs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (catalog.Run, error) {
		var r catalog.Run
		var slot, end *time.Time
		var result string
		err := row.Scan(&r.Host, &r.ID, &r.Asset, &r.Kind, &r.Trigger, &slot, &r.Start, &end, &result, &r.Error,
			&r.Snapshot, &r.Bytes, &r.BytesStored, &r.Output, &r.HookOutput)
		r.Result = catalog.Result(result)
		if slot != nil {
			r.Slot = slot.UTC()
		}
		if end != nil {
			r.End = end.UTC()
		}
		r.Start = r.Start.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list runs: %w", err)
	}
	return out, nil
}

// Drill is a drill report and the host that ran it.
type Drill struct {
	Host   string
	Report *evidence.DrillReport
}

// DrillFilter selects drill reports.
type DrillFilter struct {
	Hosts []string  // none: every host
	Asset string    // "" for every asset
	Since time.Time // zero for all
	Limit int       // 0 for no limit
}

// Drills lists drill reports of every host, newest first.
func (s *Store) Drills(ctx context.Context, f DrillFilter) ([]Drill, error) {
	var w where
	if len(f.Hosts) > 0 {
		w.add("host = ANY(?)", f.Hosts)
	}
	if f.Asset != "" {
		w.add("asset = ?", f.Asset)
	}
	if !f.Since.IsZero() {
		w.add("started >= ?", f.Since)
	}
	q := `SELECT host, id, report FROM drills` + w.String() + ` ORDER BY started DESC, id DESC`
	q += w.limit(f.Limit)
	rows, err := s.pool.Query(ctx, q, w.args...)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list drills: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDrill)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list drills: %w", err)
	}
	return out, nil
}

// Verify is a verify and the host that ran it.
type Verify struct {
	Host string
	catalog.Verify
}

// LastVerifies returns the newest verify of each repository of each host.
func (s *Store) LastVerifies(ctx context.Context) ([]Verify, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (host, repository) host, repository, started, ended, ok, error, objects
		FROM verifies ORDER BY host, repository, started DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: last verifies: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Verify, error) {
		var v Verify
		err := row.Scan(&v.Host, &v.Repository, &v.Start, &v.End, &v.OK, &v.Error, &v.Objects)
		v.Start, v.End = v.Start.UTC(), v.End.UTC()
		return v, err
	})
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: last verifies: %w", err)
	}
	return out, nil
}

// Assets lists the asset states every host published, by host and name.
func (s *Store) Assets(ctx context.Context) ([]Asset, error) {
	rows, err := s.pool.Query(ctx, `SELECT host, name, kind, tier, last_backup, rpo_seconds, rpo_target_seconds, state,
		detail, updated FROM assets ORDER BY host, name`)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list assets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Asset, error) {
		var a Asset
		var last *time.Time
		var detail []byte
		err := row.Scan(&a.Host, &a.Name, &a.Kind, &a.Tier, &last, &a.RPOSeconds, &a.RPOTargetSeconds, &a.State, &detail, &a.Updated)
		if last != nil {
			a.LastBackup = last.UTC()
		}
		a.Updated = a.Updated.UTC()
		if string(detail) != "{}" {
			a.Detail = detail
		}
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list assets: %w", err)
	}
	return out, nil
}

// HostInfo is what the catalog knows of one agent.
type HostInfo struct {
	Host       string    `json:"host"`
	FirstSeen  time.Time `json:"first_seen"`
	LastSeen   time.Time `json:"last_seen"`
	ShippedSeq int64     `json:"shipped_seq"`
	Version    string    `json:"version,omitempty"`
}

// Hosts lists the agents that have written to the catalog.
func (s *Store) Hosts(ctx context.Context) ([]HostInfo, error) {
	rows, err := s.pool.Query(ctx, `SELECT host, first_seen, last_seen, shipped_seq, version FROM hosts ORDER BY host`)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list hosts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (HostInfo, error) {
		var h HostInfo
		err := row.Scan(&h.Host, &h.FirstSeen, &h.LastSeen, &h.ShippedSeq, &h.Version)
		h.FirstSeen, h.LastSeen = h.FirstSeen.UTC(), h.LastSeen.UTC()
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: list hosts: %w", err)
	}
	return out, nil
}

// AuditRecords calls fn with each audit event of host selected, in the
// order of their sequence numbers (what verify walks), as its own catalog
// would: those of the host's current chain (the one its newest event is
// in), since a host whose state_dir was made anew starts another chain
// and its older one stays in the table. The record is valid only during
// the call.
func (s *Store) AuditRecords(ctx context.Context, host string, f catalog.AuditFilter, fn func(*audit.Record) error) error {
	var w where
	w.add("host = ?", host)
	w.add("chain = (SELECT chain FROM audit_events WHERE host = ? ORDER BY time DESC, seq DESC LIMIT 1)", host)
	w.add("seq >= ?", int64(f.From))
	if f.To > 0 {
		w.add("seq <= ?", int64(f.To))
	}
	if !f.Since.IsZero() {
		w.add("time >= ?", f.Since)
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, time, body, hash FROM audit_events`+w.String()+` ORDER BY seq`, w.args...)
	if err != nil {
		return fmt.Errorf("fleet catalog: audit events of %s: %w", host, err)
	}
	defer rows.Close()
	var r audit.Record
	for rows.Next() {
		var seq int64
		var hash []byte
		if err := rows.Scan(&seq, &r.Time, &r.Body, &hash); err != nil {
			return fmt.Errorf("fleet catalog: audit events of %s: %w", host, err)
		}
		r.Seq, r.Time = uint64(seq), r.Time.UTC()
		r.Hash = audit.Hash{}
		copy(r.Hash[:], hash)
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("fleet catalog: audit events of %s: %w", host, err)
	}
	return nil
}

// scanDrill reads a row of host, id and report.
func scanDrill(row pgx.CollectableRow) (Drill, error) {
	var d Drill
	var id, doc string
	if err := row.Scan(&d.Host, &id, &doc); err != nil {
		return d, err
	}
	r, err := evidence.Unmarshal([]byte(doc))
	if err != nil {
		return d, fmt.Errorf("drill %s of %s: %w", id, d.Host, err)
	}
	d.Report = r
	return d, nil
}

// LastDrills is the newest drill report of each asset of each host.
func (s *Store) LastDrills(ctx context.Context) ([]Drill, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (host, asset) host, id, report FROM drills
		ORDER BY host, asset, started DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: last drills: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanDrill)
	if err != nil {
		return nil, fmt.Errorf("fleet catalog: last drills: %w", err)
	}
	return out, nil
}
