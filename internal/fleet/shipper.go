package fleet

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// Shipper defaults.
const (
	DefaultShipInterval = time.Second
	DefaultMinBackoff   = time.Second
	DefaultMaxBackoff   = time.Minute
	DefaultBatch        = 500
)

// Shipper sends this host's outbox to the fleet catalog, in order.
//
// Where it resumes is read from the catalog (hosts.shipped_seq), the
// authority: a shipper that died after the catalog committed a batch and
// before the batch was deleted locally finds the batch shipped and
// deletes it, and one that died before the commit ships it again. The
// records are upserts keyed by host and id, so nothing is doubled either
// way.
type Shipper struct {
	Store   *Store
	Catalog *catalog.Catalog
	Logger  *slog.Logger
	// Interval is how often the outbox is looked at when idle;
	// MinBackoff and MaxBackoff bound the wait after a failure, doubled
	// from one to the other while the catalog stays unreachable.
	Interval, MinBackoff, MaxBackoff time.Duration
	// Batch is the most records shipped in one transaction.
	Batch int

	// afterCommit, when set (tests), runs between the catalog's commit
	// and the local delete; an error stops there, as a crash would.
	afterCommit func() error

	mu       sync.Mutex // one shipping at a time (Run and Flush)
	outbox   string     // the local outbox's id
	shipped  int64      // the catalog's shipped_seq, when known
	known    bool
	down     bool // an outage has been logged and not its end
	downSent int  // records shipped since the catalog came back
	kick     chan struct{}
	once     sync.Once
}

func (s *Shipper) init() {
	s.once.Do(func() {
		s.kick = make(chan struct{}, 1)
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.Interval <= 0 {
			s.Interval = DefaultShipInterval
		}
		if s.MinBackoff <= 0 {
			s.MinBackoff = DefaultMinBackoff
		}
		if s.MaxBackoff < s.MinBackoff {
			s.MaxBackoff = max(DefaultMaxBackoff, s.MinBackoff)
		}
		if s.Batch <= 0 {
			s.Batch = DefaultBatch
		}
	})
}

// Kick asks a running shipper to look at the outbox now.
func (s *Shipper) Kick() {
	s.init()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run ships until ctx is done, retrying with backoff while the catalog
// cannot be reached. An outage is logged once when it starts and once
// when it ends, not at every attempt. It returns ctx's error.
func (s *Shipper) Run(ctx context.Context) error {
	s.init()
	wait := time.Duration(0)
	backoff := s.MinBackoff
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-s.kick:
				t.Stop()
			case <-t.C:
			}
		}
		n, err := s.step(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			s.failed(err)
			wait, backoff = backoff, min(2*backoff, s.MaxBackoff)
		case n == s.Batch:
			wait, backoff = 0, s.MinBackoff // more to ship
		default:
			wait, backoff = s.Interval, s.MinBackoff
		}
	}
}

// Flush ships the whole outbox and returns the first failure, without
// retrying: for tests, and for a caller that wants the catalog current.
func (s *Shipper) Flush(ctx context.Context) error {
	s.init()
	for {
		n, err := s.step(ctx)
		if err != nil {
			s.failed(err)
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// failed notes a failed step: logged when it starts an outage.
func (s *Shipper) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.down {
		s.down, s.downSent = true, 0
		n, _ := s.Catalog.OutboxLen(context.Background())
		msg := "fleet catalog unreachable: records are kept in the local outbox until it returns"
		if errors.Is(err, ErrShipConflict) {
			msg = "fleet catalog refuses this agent's records: they are kept in the local outbox"
		}
		s.Logger.Warn(msg, "host", s.Store.Host(), "queued", n, "err", err)
	}
}

// step ships one batch; it returns how many records it shipped.
func (s *Shipper) step(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outbox == "" {
		id, err := s.Catalog.OutboxID(ctx)
		if err != nil {
			return 0, err
		}
		s.outbox = id
	}
	if !s.known {
		seq, err := s.Store.Resume(ctx, s.outbox)
		if err != nil {
			return 0, err
		}
		// What the catalog holds is shipped, whatever this process
		// remembers: delete it here before reading what follows.
		if err := s.Catalog.Shipped(ctx, seq); err != nil {
			return 0, err
		}
		s.shipped, s.known = seq, true
	}
	rows, err := s.Catalog.Outbox(ctx, s.shipped, s.Batch)
	if err != nil {
		return 0, err
	}
	if len(rows) > 0 {
		if err := s.Store.Ship(ctx, s.outbox, s.shipped, rows); err != nil {
			// The commit may have happened with its answer lost: ask
			// the catalog again rather than guess.
			s.known = false
			return 0, err
		}
		s.shipped = rows[len(rows)-1].Seq
		if s.afterCommit != nil {
			if err := s.afterCommit(); err != nil {
				s.known = false
				return 0, err
			}
		}
		if err := s.Catalog.Shipped(ctx, s.shipped); err != nil {
			// Shipped already: a later delete (or the next resume)
			// removes them.
			s.Logger.Warn("fleet catalog: delete shipped records from the outbox", "err", err)
		}
	}
	if s.down {
		s.downSent += len(rows)
		if len(rows) < s.Batch {
			s.down = false
			s.Logger.Info("fleet catalog reachable again: queued records shipped", "host", s.Store.Host(), "shipped", s.downSent)
		}
	}
	return len(rows), nil
}
