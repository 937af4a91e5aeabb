// Package walstream receives a PostgreSQL server's WAL over a physical
// replication connection, on a slot it creates, and hands it to a Sink:
// each completed segment, the prefix of the segment in progress (every
// flush interval or flush size), and timeline history files. It reports to
// the server as flushed only what the sink has made durable, so the slot
// keeps everything else and a synchronous standby name on it acknowledges
// only what is safe.
//
// It knows nothing of repositories or file names: the postgres kind is its
// one user and its sink (internal/postgres/stream.go).
package walstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Sink makes what the stream receives durable. Each method returns only
// once its data is durable; the stream reports nothing as flushed before.
type Sink interface {
	// Identify is called once per connection, before any data: a sink
	// refuses a cluster other than the one it stores with a
	// *PermanentError, which ends Run.
	Identify(ctx context.Context, systemID string, segSize uint64) error
	// Segment stores a completed segment (segSize bytes).
	Segment(ctx context.Context, tli uint32, segno uint64, data []byte) error
	// Partial stores the received prefix of the segment in progress,
	// replacing any earlier prefix of it.
	Partial(ctx context.Context, tli uint32, segno uint64, data []byte) error
	// History stores a timeline history file (TIMELINE_HISTORY).
	History(ctx context.Context, name string, content []byte) error
}

// Config is one stream.
type Config struct {
	// DSN is the server's connection string (key=value or URL); the
	// replication connection adds replication=true to it.
	DSN string
	// Slot is the physical replication slot, created when absent.
	Slot string
	// ApplicationName is how the server sees the stream (pg_stat_replication,
	// synchronous_standby_names).
	ApplicationName string
	// FlushInterval and FlushBytes bound what the sink has not stored yet:
	// the partial segment is stored when either is reached.
	FlushInterval time.Duration
	FlushBytes    int
	Sink          Sink
	Log           *slog.Logger
	// Progress, when not nil, is called after each durable step with the
	// position durable in the sink.
	Progress func(durable pglogrepl.LSN)
}

// DefaultFlushInterval and DefaultFlushBytes are the policy's defaults.
const (
	DefaultFlushInterval = time.Second
	DefaultFlushBytes    = 1 << 20
)

// SlotName is the slot Lifeboat creates for an asset: lifeboat_ and the
// asset name with every character a slot name cannot hold replaced.
func SlotName(asset string) string {
	var b strings.Builder
	b.WriteString("lifeboat_")
	for _, c := range strings.ToLower(asset) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 { // NAMEDATALEN-1
		s = s[:63]
	}
	return s
}

// ErrTimelineEnd means the server ended the stream at the end of the
// timeline it was streaming: the next connection follows the new one.
var ErrTimelineEnd = errors.New("timeline ended")

// Run streams until ctx ends or the connection fails, reconnecting after
// retry. It returns ctx's error, or a permanent error from the sink's
// Identify (another cluster).
func Run(ctx context.Context, cfg Config, retry time.Duration) error {
	var resume pglogrepl.LSN
	for {
		err := runOnce(ctx, cfg, &resume)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var perm *PermanentError
		if errors.As(err, &perm) {
			return err
		}
		if errors.Is(err, ErrTimelineEnd) {
			cfg.logger().Info("WAL stream: timeline ended, following the next one", "slot", cfg.Slot)
			continue
		}
		cfg.logger().Warn("WAL stream interrupted; reconnecting", "slot", cfg.Slot, "err", err, "after", retry)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// PermanentError is an error reconnecting does not cure.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

func (cfg Config) logger() *slog.Logger {
	if cfg.Log != nil {
		return cfg.Log
	}
	return slog.Default()
}

// prepare reads the segment size and the slot's restart position over an
// ordinary connection, creating the slot (reserving WAL at once) when it
// does not exist.
func prepare(ctx context.Context, cfg Config) (segSize uint64, restart pglogrepl.LSN, err error) {
	conn, err := pgx.Connect(ctx, cfg.DSN)
	if err != nil {
		return 0, 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size'`).Scan(&segSize); err != nil {
		return 0, 0, fmt.Errorf("wal_segment_size: %w", err)
	}
	var lsn *string
	err = conn.QueryRow(ctx, `SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1 AND slot_type = 'physical'`, cfg.Slot).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		err = conn.QueryRow(ctx, `SELECT lsn::text FROM pg_create_physical_replication_slot($1, true)`, cfg.Slot).Scan(&lsn)
		if err == nil {
			cfg.logger().Info("WAL stream: replication slot created", "slot", cfg.Slot, "restart_lsn", deref(lsn))
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("replication slot %s: %w", cfg.Slot, err)
	}
	if lsn == nil {
		// A slot that reserves nothing (created by hand without
		// reserving): start where the server writes now.
		if err := conn.QueryRow(ctx, `SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END::text`).Scan(&lsn); err != nil || lsn == nil {
			return 0, 0, fmt.Errorf("slot %s reserves no WAL and the current position is unknown: %v", cfg.Slot, err)
		}
	}
	restart, err = pglogrepl.ParseLSN(*lsn)
	if err != nil {
		return 0, 0, fmt.Errorf("slot %s: %w", cfg.Slot, err)
	}
	return segSize, restart, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// runOnce is one connection: it streams from the start of the segment
// holding the slot's restart position, so the segment in progress is
// always received whole, but no earlier than the segment holding *resume,
// what this process already made durable (the slot may not have heard of
// it before the connection ended), which it advances; it returns when the
// connection ends.
func runOnce(ctx context.Context, cfg Config, resume *pglogrepl.LSN) error {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = DefaultFlushBytes
	}
	segSize, restart, err := prepare(ctx, cfg)
	if err != nil {
		return err
	}
	pcfg, err := pgconn.ParseConfig(cfg.DSN)
	if err != nil {
		return &PermanentError{fmt.Errorf("connection string: %w", err)}
	}
	pcfg.RuntimeParams["replication"] = "true"
	if cfg.ApplicationName != "" {
		pcfg.RuntimeParams["application_name"] = cfg.ApplicationName
	}
	conn, err := pgconn.ConnectConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("replication connection: %w", err)
	}
	defer conn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	// A sink that refuses the server for good (another cluster) says so
	// with a PermanentError; anything else (an unreachable repository)
	// is retried.
	if err := cfg.Sink.Identify(ctx, sys.SystemID, segSize); err != nil {
		return err
	}
	restart = max(restart, *resume)
	start := pglogrepl.LSN(uint64(restart) / segSize * segSize)
	tli := uint32(sys.Timeline)
	if tli > 1 {
		h, err := pglogrepl.TimelineHistory(ctx, conn, sys.Timeline)
		if err != nil {
			return fmt.Errorf("TIMELINE_HISTORY %d: %w", tli, err)
		}
		if err := cfg.Sink.History(ctx, h.FileName, h.Content); err != nil {
			return fmt.Errorf("store %s: %w", h.FileName, err)
		}
		if tli, err = segmentTimeline(h.Content, start, segSize, tli); err != nil {
			return &PermanentError{fmt.Errorf("%s: %w", h.FileName, err)}
		}
	}
	if err := pglogrepl.StartReplication(ctx, conn, cfg.Slot, start, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.PhysicalReplication, Timeline: int32(tli)}); err != nil {
		return fmt.Errorf("START_REPLICATION %s timeline %d: %w", start, tli, err)
	}
	cfg.logger().Info("WAL stream started", "slot", cfg.Slot, "timeline", tli, "from", start.String())
	s := &stream{cfg: cfg, conn: conn, tli: tli, segSize: segSize, buf: make([]byte, segSize),
		segno: uint64(start) / segSize, durable: start, lastFlush: time.Now()}
	err = s.loop(ctx)
	*resume = max(*resume, s.durable)
	return err
}

// segmentTimeline is the timeline a segment starting at start is
// streamed on: the oldest timeline of the history that ran past the
// segment's end, so that a segment wholly before a switch point is stored
// under its old timeline (as PostgreSQL archives it) and the segment
// holding the switch under the new one. history is a timeline history
// file: lines "parent-timeline<TAB>switch-LSN<TAB>reason".
func segmentTimeline(history []byte, start pglogrepl.LSN, segSize uint64, current uint32) (uint32, error) {
	end := uint64(start) + segSize
	for _, line := range strings.Split(string(history), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bad timeline %q", f[0])
		}
		sw, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return 0, fmt.Errorf("bad switch point %q", f[1])
		}
		if end <= uint64(sw) {
			return uint32(tli), nil
		}
	}
	return current, nil
}

type stream struct {
	cfg     Config
	conn    *pgconn.PgConn
	tli     uint32
	segSize uint64
	buf     []byte // the segment in progress
	segno   uint64
	written int           // bytes of buf received
	stored  int           // bytes of buf the sink holds as a partial
	durable pglogrepl.LSN // position the sink holds

	lastFlush  time.Time
	lastStatus time.Time
}

const statusInterval = 10 * time.Second

func (s *stream) received() pglogrepl.LSN {
	return pglogrepl.LSN(s.segno*s.segSize + uint64(s.written))
}

func (s *stream) loop(ctx context.Context) error {
	for {
		if ctx.Err() != nil {
			s.flushPartial(context.WithoutCancel(ctx))
			return ctx.Err()
		}
		if s.written > s.stored && (time.Since(s.lastFlush) >= s.cfg.FlushInterval || s.written-s.stored >= s.cfg.FlushBytes) {
			if err := s.flushPartial(ctx); err != nil {
				return err
			}
		}
		if time.Since(s.lastStatus) >= statusInterval {
			if err := s.status(false); err != nil {
				return err
			}
		}
		wait := statusInterval - time.Since(s.lastStatus)
		if s.written > s.stored {
			if w := s.cfg.FlushInterval - time.Since(s.lastFlush); w < wait {
				wait = w
			}
		}
		if wait < time.Millisecond {
			wait = time.Millisecond
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		msg, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			s.flushPartial(context.WithoutCancel(ctx))
			return fmt.Errorf("receive: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return err
				}
				if ka.ReplyRequested {
					if err := s.status(false); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return err
				}
				if err := s.add(ctx, x.WALStart, x.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.CopyDone:
			// The server's timeline ended (a promoted standby we streamed
			// from, or a switch): keep what was received, then reconnect.
			if err := s.flushPartial(ctx); err != nil {
				return err
			}
			return ErrTimelineEnd
		case *pgproto3.ErrorResponse:
			s.flushPartial(context.WithoutCancel(ctx))
			return pgconn.ErrorResponseToPgError(m)
		}
	}
}

// add places WAL received at start into the segment in progress, storing
// each segment it completes.
func (s *stream) add(ctx context.Context, start pglogrepl.LSN, data []byte) error {
	if start != s.received() {
		// The protocol sends WAL in order and without holes; anything
		// else would store a segment with a hole in it.
		return fmt.Errorf("WAL arrived at %s, expected %s", start, s.received())
	}
	for len(data) > 0 {
		n := copy(s.buf[s.written:], data)
		s.written += n
		data = data[n:]
		if uint64(s.written) == s.segSize {
			if err := s.cfg.Sink.Segment(ctx, s.tli, s.segno, s.buf); err != nil {
				return fmt.Errorf("store segment: %w", err)
			}
			s.segno++
			s.written, s.stored = 0, 0
			clear(s.buf)
			s.markDurable(pglogrepl.LSN(s.segno * s.segSize))
		}
	}
	return nil
}

// flushPartial stores the received prefix of the segment in progress.
func (s *stream) flushPartial(ctx context.Context) error {
	s.lastFlush = time.Now()
	if s.written <= s.stored {
		return nil
	}
	if err := s.cfg.Sink.Partial(ctx, s.tli, s.segno, s.buf[:s.written]); err != nil {
		return fmt.Errorf("store partial segment: %w", err)
	}
	s.stored = s.written
	s.markDurable(s.received())
	return nil
}

func (s *stream) markDurable(lsn pglogrepl.LSN) {
	s.durable = lsn
	if s.cfg.Progress != nil {
		s.cfg.Progress(lsn)
	}
	// A synchronous committer waits for this report: send it now.
	if err := s.status(false); err != nil {
		s.cfg.logger().Warn("WAL stream: status update not sent", "err", err)
	}
}

// status reports received WAL as written and only durable WAL as flushed
// and applied: the slot releases, and a synchronous commit returns, only
// for what the repository holds.
func (s *stream) status(reply bool) error {
	s.lastStatus = time.Now()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.received(), WALFlushPosition: s.durable, WALApplyPosition: s.durable, ReplyRequested: reply})
	if err != nil {
		return fmt.Errorf("standby status update: %w", err)
	}
	return nil
}
