package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// Asset is one asset's state as its agent publishes it: what the fleet's
// overview, status and check read for every host.
type Asset struct {
	Host  string `json:"host"`
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Tier  string `json:"tier,omitempty"`
	State string `json:"state"` // ok, warning, failing, unknown
	// LastBackup is the newest snapshot's time; zero for none.
	LastBackup time.Time `json:"last_backup,omitzero"`
	// RPOSeconds is the data that would be lost now, in seconds; nil
	// when unknown. RPOTargetSeconds is the tier's target, nil for none.
	RPOSeconds       *float64 `json:"rpo_seconds"`
	RPOTargetSeconds *float64 `json:"rpo_target_seconds"`
	// Detail is what else the agent knows (status rows, check results).
	Detail  json.RawMessage `json:"detail,omitempty"`
	Updated time.Time       `json:"updated"`
}

// OutboxTakeover is how long the catalog must have heard nothing from a
// host's outbox before another outbox (a state_dir made anew) ships under
// the same host name: two agents given one name are told apart from one
// agent rebuilt.
const OutboxTakeover = 2 * time.Minute

// ErrShipConflict says the catalog's record of what this host shipped
// moved under a shipper: another process ships for the same host name.
var ErrShipConflict = errors.New("another agent ships under this host name (two agents with the same host: key?)")

// Resume is the last sequence number of the outbox with this id that the
// catalog holds: where shipping resumes. 0 for an outbox it has never
// seen (a new or rebuilt local catalog).
func (s *Store) Resume(ctx context.Context, outbox string) (int64, error) {
	if err := s.Migrate(ctx); err != nil {
		return 0, err
	}
	var seq int64
	var id string
	err := s.pool.QueryRow(ctx, `SELECT shipped_seq, outbox FROM hosts WHERE host = $1`, s.host).Scan(&seq, &id)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && id != outbox) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fleet catalog: resume: %w", err)
	}
	return seq, nil
}

// Ship stores rows, the outbox records after prev, in one transaction
// that also moves the host's shipped_seq to the last of them: the
// catalog holds a batch entirely or not at all, and the upserts make a
// batch shipped twice (a shipper that died before deleting it locally)
// change nothing.
func (s *Store) Ship(ctx context.Context, outbox string, prev int64, rows []catalog.OutboxRow) error {
	if len(rows) == 0 {
		return nil
	}
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var seq int64
		var id string
		var recent bool
		err := tx.QueryRow(ctx, `SELECT shipped_seq, outbox, coalesce(shipped_at > now() - $2::interval, false)
			FROM hosts WHERE host = $1 FOR UPDATE`, s.host, OutboxTakeover.String()).Scan(&seq, &id, &recent)
		if errors.Is(err, pgx.ErrNoRows) {
			if _, err := tx.Exec(ctx, `INSERT INTO hosts (host, first_seen, last_seen, outbox) VALUES ($1, now(), now(), $2)`, s.host, outbox); err != nil {
				return err
			}
			seq, id = 0, outbox
		} else if err != nil {
			return err
		}
		if id != outbox {
			if id != "" && recent {
				return ErrShipConflict
			}
			seq = 0 // a new outbox of this host: a state_dir made anew
		}
		if seq != prev {
			return ErrShipConflict
		}
		b := &pgx.Batch{}
		last := prev
		for _, r := range rows {
			if r.Seq <= last {
				return fmt.Errorf("outbox record %d out of order after %d", r.Seq, last)
			}
			last = r.Seq
			if err := s.queue(b, outbox, r); err != nil {
				return fmt.Errorf("outbox record %d (%s): %w", r.Seq, r.Type, err)
			}
		}
		b.Queue(`UPDATE hosts SET shipped_seq = $2, outbox = $3, last_seen = now(), shipped_at = now() WHERE host = $1`, s.host, last, outbox)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("fleet catalog: ship records %d–%d: %w", rows[0].Seq, rows[len(rows)-1].Seq, err)
	}
	return nil
}

// queue adds the upsert of one outbox record of outbox to b.
func (s *Store) queue(b *pgx.Batch, outbox string, r catalog.OutboxRow) error {
	switch r.Type {
	case catalog.OutboxRun:
		var v catalog.Run
		if err := json.Unmarshal(r.Payload, &v); err != nil {
			return err
		}
		b.Queue(`INSERT INTO runs (host, id, asset, kind, trigger, slot, started, ended, result, error, snapshot, bytes,
			bytes_stored, output, hook_output, outbox) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
			ON CONFLICT (host, outbox, id) DO UPDATE SET asset = excluded.asset, kind = excluded.kind, trigger = excluded.trigger,
			slot = excluded.slot, started = excluded.started, ended = excluded.ended, result = excluded.result,
			error = excluded.error, snapshot = excluded.snapshot, bytes = excluded.bytes, bytes_stored = excluded.bytes_stored,
			output = excluded.output, hook_output = excluded.hook_output`,
			s.host, v.ID, v.Asset, v.Kind, v.Trigger, nullTime(v.Slot), v.Start, nullTime(v.End), string(v.Result), v.Error,
			v.Snapshot, v.Bytes, v.BytesStored, v.Output, v.HookOutput, outbox)
		if v.Result == catalog.OK && v.Snapshot != "" {
			// The fleet sees a backup when it lands, not at the next
			// check, which republishes the asset's whole state.
			b.Queue(`UPDATE assets SET last_backup = $3 WHERE host = $1 AND name = $2 AND (last_backup IS NULL OR last_backup < $3)`,
				s.host, v.Asset, v.Start)
		}
	case catalog.OutboxDrill:
		var v catalog.OutboxDrillRecord
		if err := json.Unmarshal(r.Payload, &v); err != nil {
			return err
		}
		b.Queue(`INSERT INTO drills (host, id, asset, started, passed, report) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (host, id) DO UPDATE SET asset = excluded.asset, started = excluded.started,
			passed = excluded.passed, report = excluded.report`,
			s.host, v.ID, v.Asset, v.Started, v.Passed, string(v.Report))
	case catalog.OutboxVerify:
		var v catalog.OutboxVerifyRecord
		if err := json.Unmarshal(r.Payload, &v); err != nil {
			return err
		}
		b.Queue(`INSERT INTO verifies (host, id, repository, started, ended, ok, error, objects, outbox) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (host, outbox, id) DO UPDATE SET repository = excluded.repository, started = excluded.started,
			ended = excluded.ended, ok = excluded.ok, error = excluded.error, objects = excluded.objects`,
			s.host, v.ID, v.Repository, v.Start, v.End, v.OK, v.Error, v.Objects, outbox)
	case catalog.OutboxAudit:
		var v catalog.OutboxAuditRecord
		if err := json.Unmarshal(r.Payload, &v); err != nil {
			return err
		}
		b.Queue(`INSERT INTO audit_events (host, chain, seq, time, body, hash) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (host, chain, seq) DO UPDATE SET time = excluded.time, body = excluded.body,
			hash = excluded.hash`, s.host, v.Chain, int64(v.Seq), v.Time, v.Body, v.Hash)
	case catalog.OutboxAsset:
		var v Asset
		if err := json.Unmarshal(r.Payload, &v); err != nil {
			return err
		}
		queueAsset(b, s.host, &v)
	default:
		// A record type a newer Lifeboat queued: refusing it keeps the
		// queue, in order, for a shipper that knows it.
		return fmt.Errorf("unknown record type %q (a newer lifeboat wrote it)", r.Type)
	}
	return nil
}

func queueAsset(b *pgx.Batch, host string, v *Asset) {
	detail := v.Detail
	if len(detail) == 0 {
		detail = json.RawMessage(`{}`)
	}
	b.Queue(`INSERT INTO assets (host, name, kind, tier, last_backup, rpo_seconds, rpo_target_seconds, state, detail, updated)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (host, name) DO UPDATE SET kind = excluded.kind, tier = excluded.tier, last_backup = excluded.last_backup,
		rpo_seconds = excluded.rpo_seconds, rpo_target_seconds = excluded.rpo_target_seconds, state = excluded.state,
		detail = excluded.detail, updated = excluded.updated WHERE assets.updated <= excluded.updated`,
		host, v.Name, v.Kind, v.Tier, nullTime(v.LastBackup), v.RPOSeconds, v.RPOTargetSeconds, v.State, string(detail), v.Updated)
}

// Publish writes this host's asset rows directly (the shipper writes
// those queued in the outbox): for a caller that is connected and has
// nothing to queue. An older state never replaces a newer one.
func (s *Store) Publish(ctx context.Context, assets []Asset) error {
	if err := s.Migrate(ctx); err != nil {
		return err
	}
	b := &pgx.Batch{}
	for i := range assets {
		queueAsset(b, s.host, &assets[i])
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("fleet catalog: publish assets of %s: %w", s.host, err)
	}
	return nil
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
