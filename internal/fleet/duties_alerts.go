package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
)

// HostProblem is a problem of one host of the fleet.
type HostProblem struct {
	Host string
	alert.Problem
}

// OnHost puts a host's name on the problems its own check found.
func OnHost(host string, ps []alert.Problem) []HostProblem {
	out := make([]HostProblem, len(ps))
	for i, p := range ps {
		out[i] = HostProblem{Host: host, Problem: p}
	}
	return out
}

// Alert states: open while the problem lasts, resolved once it cleared,
// closed once every destination that heard of it heard it resolved.
const (
	alertOpen     = "open"
	alertResolved = "resolved"
	alertClosed   = "closed"
)

// Message actions in alert_sends.
const (
	sendTrigger = "trigger"
	sendResolve = "resolve"
)

// claimLease is how long a claim on a message stands without being
// marked sent. A leader that dies between its claim and the send's
// answer leaves the claim; after the lease another leader sends the
// message again: in that window (and only there) a message can go out
// twice, never not at all.
const claimLease = 4 * alert.DefaultTimeout

// SyncAlerts makes the open alerts raised by source (an agent's host
// name, or SourceFleet) the problems given, as of now: a problem not yet
// open opens an alert, an open one takes the problem's newest summary,
// and one no longer among them is resolved. Two leaders syncing at once
// cannot open one problem twice (a unique index on the open keys).
func (s *Store) SyncAlerts(ctx context.Context, source string, problems []HostProblem, now time.Time) error {
	want := make(map[string]HostProblem, len(problems))
	for _, p := range problems {
		want[alert.FleetKey(p.Host, p.Problem)] = p
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, key, message FROM alerts WHERE source = $1 AND state = 'open'`, source)
		if err != nil {
			return err
		}
		type open struct{ id, message string }
		have := map[string]open{}
		for rows.Next() {
			var id, key, msg string
			if err := rows.Scan(&id, &key, &msg); err != nil {
				rows.Close()
				return err
			}
			have[key] = open{id, msg}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		b := &pgx.Batch{}
		for key, o := range have {
			p, still := want[key]
			switch {
			case !still:
				b.Queue(`UPDATE alerts SET state = 'resolved', resolved = $2 WHERE id = $1 AND state = 'open'`, o.id, now)
			case p.Summary != o.message:
				b.Queue(`UPDATE alerts SET message = $2 WHERE id = $1`, o.id, p.Summary)
			}
		}
		for key, p := range want {
			if _, ok := have[key]; ok {
				continue
			}
			id := key + "@" + now.UTC().Format(time.RFC3339Nano)
			b.Queue(`INSERT INTO alerts (id, key, source, host, asset, check_name, subject, severity, state, message, created)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9, $10) ON CONFLICT DO NOTHING`,
				id, key, source, p.Host, p.Asset, p.Check, p.Subject, p.Severity, p.Summary, now)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("fleet alerts: record the problems of %s: %w", source, err)
	}
	return nil
}

// storedAlert is a row of alerts still to deliver or close.
type storedAlert struct {
	id, key, host, asset, check, subject, severity, state, message string
	created                                                        time.Time
	resolved                                                       *time.Time
}

// sendRow is a row of alert_sends.
type sendRow struct {
	dest, action string
	repeat       int
	sentAt       *time.Time
}

// DeliverAlerts sends every message due, each once across the fleet
// (claimLease says when it can be twice): to each destination of n, an open alert's trigger (and its
// repeats every destination's repeat), a resolved one's resolve where the
// trigger went. Each message is claimed in alert_sends before it is sent
// and marked sent after; a send that fails gives its claim back, so the
// next round tries it again. me names the claimer. A nil n sends nothing:
// the alerts wait in the table.
func (s *Store) DeliverAlerts(ctx context.Context, n *alert.Notifier, me string, now func() time.Time) error {
	if n == nil {
		return nil
	}
	alerts, sends, err := s.pendingAlerts(ctx)
	if err != nil {
		return err
	}
	dests := n.Destinations()
	var errs []error
	for _, a := range alerts {
		closed := a.state == alertResolved // until a destination is still owed its resolve
		for _, d := range dests {
			action, repeat, due, owed := nextMessage(a, d, sends[a.id], now())
			sent := false
			if due && ctx.Err() != nil { // the leadership is gone: start nothing more
				return errors.Join(append(errs, ctx.Err())...)
			}
			if due {
				var err error
				if sent, err = s.sendOnce(ctx, n, me, a, d.ID, action, repeat, now); err != nil {
					errs = append(errs, err)
				}
			}
			if owed && !(sent && action == sendResolve) {
				closed = false
			}
		}
		if closed {
			if _, err := s.pool.Exec(ctx, `UPDATE alerts SET state = 'closed' WHERE id = $1 AND state = 'resolved'`, a.id); err != nil {
				errs = append(errs, fmt.Errorf("fleet alerts: close %s: %w", a.key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// nextMessage says which message of a is due at destination d now, if
// any, and, for a resolved alert, whether d is still owed its resolve
// (it heard the trigger, or a message to it is claimed and not yet
// known sent).
func nextMessage(a storedAlert, d alert.Destination, sends []sendRow, now time.Time) (action string, repeat int, due, owed bool) {
	triggers, resolved, pending := 0, false, false
	var last time.Time
	for _, s := range sends {
		if s.dest != d.ID {
			continue
		}
		if s.sentAt == nil {
			pending = true
			continue
		}
		switch s.action {
		case sendTrigger:
			triggers++
			if s.sentAt.After(last) {
				last = *s.sentAt
			}
		case sendResolve:
			resolved = true
		}
	}
	switch {
	case a.state == alertOpen && triggers == 0:
		return sendTrigger, 0, true, false
	case a.state == alertOpen && d.Repeat > 0 && now.Sub(last) >= d.Repeat:
		return sendTrigger, triggers, true, false
	case a.state == alertResolved && triggers > 0 && !resolved:
		return sendResolve, 0, true, true
	case a.state == alertResolved && pending && !resolved:
		// A trigger claimed and in flight elsewhere: wait for its outcome.
		return "", 0, false, true
	}
	return "", 0, false, false
}

// sendOnce claims one message, sends it, and marks it sent (or gives the
// claim back). It reports whether it sent it.
func (s *Store) sendOnce(ctx context.Context, n *alert.Notifier, me string, a storedAlert, dest, action string, repeat int, now func() time.Time) (bool, error) {
	t := now()
	var id string
	err := s.pool.QueryRow(ctx, `INSERT INTO alert_sends (alert_id, destination, action, repeat, claimed_at, claimed_by)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (alert_id, destination, action, repeat) DO UPDATE
			SET claimed_at = excluded.claimed_at, claimed_by = excluded.claimed_by
			WHERE alert_sends.sent_at IS NULL AND alert_sends.claimed_at < $7
		RETURNING alert_id`, a.id, dest, action, repeat, t, me, t.Add(-claimLease)).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another leader has it
	}
	if err != nil {
		return false, fmt.Errorf("fleet alerts: claim %s %s for %s: %w", action, a.key, dest, err)
	}
	m := alert.Message{Resolve: action == sendResolve, Key: a.key, Host: a.host, Since: a.created, Time: t, Repeat: repeat,
		Problem: alert.Problem{Asset: a.asset, Check: a.check, Subject: a.subject, Summary: a.message, Severity: a.severity}}
	if a.resolved != nil {
		m.Resolved = *a.resolved
	}
	key := []any{a.id, dest, action, repeat, me}
	// A message claimed is sent, and its outcome written, even when the
	// leadership ends meanwhile (the claim is still ours; the send is
	// bounded by the destination's timeout): cut off, it could reach the
	// destination unrecorded, and go out again from the next leader.
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*claimLease)
	defer cancel()
	if sendErr := n.Send(bg, dest, m); sendErr != nil {
		if _, err := s.pool.Exec(bg, `DELETE FROM alert_sends WHERE alert_id = $1 AND destination = $2 AND action = $3
			AND repeat = $4 AND claimed_by = $5 AND sent_at IS NULL`, key...); err != nil {
			sendErr = errors.Join(sendErr, fmt.Errorf("give the claim back (it is taken over after %s): %w", claimLease, err))
		}
		return false, sendErr
	}
	sentAt := now()
	if _, err := s.pool.Exec(bg, `UPDATE alert_sends SET sent_at = $6 WHERE alert_id = $1 AND destination = $2 AND action = $3
		AND repeat = $4 AND claimed_by = $5`, append(key, sentAt)...); err != nil {
		return true, fmt.Errorf("fleet alerts: %s %s sent to %s but not marked sent: %w", action, a.key, dest, err)
	}
	if action == sendTrigger {
		if _, err := s.pool.Exec(bg, `UPDATE alerts SET sent_at = $2, sent_by = $3 WHERE id = $1 AND sent_at IS NULL`, a.id, sentAt, me); err != nil {
			return true, fmt.Errorf("fleet alerts: mark %s sent: %w", a.key, err)
		}
	}
	return true, nil
}

// pendingAlerts reads the alerts not closed, and their messages.
func (s *Store) pendingAlerts(ctx context.Context) ([]storedAlert, map[string][]sendRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, key, host, asset, check_name, subject, severity, state, message, created, resolved
		FROM alerts WHERE state <> 'closed' ORDER BY created, id`)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet alerts: read: %w", err)
	}
	var alerts []storedAlert
	var ids []string
	for rows.Next() {
		var a storedAlert
		if err := rows.Scan(&a.id, &a.key, &a.host, &a.asset, &a.check, &a.subject, &a.severity, &a.state, &a.message,
			&a.created, &a.resolved); err != nil {
			rows.Close()
			return nil, nil, fmt.Errorf("fleet alerts: read: %w", err)
		}
		alerts = append(alerts, a)
		ids = append(ids, a.id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("fleet alerts: read: %w", err)
	}
	sends := map[string][]sendRow{}
	if len(ids) == 0 {
		return alerts, sends, nil
	}
	rows, err = s.pool.Query(ctx, `SELECT alert_id, destination, action, repeat, sent_at FROM alert_sends WHERE alert_id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet alerts: read sends: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var r sendRow
		if err := rows.Scan(&id, &r.dest, &r.action, &r.repeat, &r.sentAt); err != nil {
			return nil, nil, fmt.Errorf("fleet alerts: read sends: %w", err)
		}
		sends[id] = append(sends[id], r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("fleet alerts: read sends: %w", err)
	}
	return alerts, sends, nil
}

// AlertKeep is how long a closed alert, and the record of its messages,
// stays in the catalog.
const AlertKeep = 90 * 24 * time.Hour

// PruneAlerts deletes the alerts closed before cutoff.
func (s *Store) PruneAlerts(ctx context.Context, cutoff time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM alerts WHERE state = 'closed' AND resolved < $1`, cutoff); err != nil {
		return fmt.Errorf("fleet alerts: prune: %w", err)
	}
	return nil
}

// OpenAlert is an alert not yet resolved, as the dashboard and status
// show it.
type OpenAlert struct {
	Host, Asset, Check, Subject, Message string
	Since                                time.Time
	// SentAt is when its first trigger went out, zero while none has.
	SentAt time.Time
	SentBy string
}

// OpenAlerts lists the fleet's open alerts, oldest first.
func (s *Store) OpenAlerts(ctx context.Context) ([]OpenAlert, error) {
	rows, err := s.pool.Query(ctx, `SELECT host, asset, check_name, subject, message, created, sent_at, coalesce(sent_by, '')
		FROM alerts WHERE state = 'open' ORDER BY created, id`)
	if err != nil {
		return nil, fmt.Errorf("fleet alerts: read: %w", err)
	}
	defer rows.Close()
	var out []OpenAlert
	for rows.Next() {
		var a OpenAlert
		var sent *time.Time
		if err := rows.Scan(&a.Host, &a.Asset, &a.Check, &a.Subject, &a.Message, &a.Since, &sent, &a.SentBy); err != nil {
			return nil, fmt.Errorf("fleet alerts: read: %w", err)
		}
		if sent != nil {
			a.SentAt = *sent
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
