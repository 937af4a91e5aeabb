package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaderLockKey is the session-level advisory lock whose holder is the
// fleet's leader ("lifeboat"). One per catalog database.
const leaderLockKey int64 = 0x6c696665626f6174

// Leadership defaults (docs/fleet.md, "Leadership"). With them a leader
// whose process dies is replaced within Retry (its session ends with its
// TCP connection), and one whose host vanishes within about
// Keepalive×(1+keepaliveCount)+Retry = 25 s, the server's keepalives
// ending its session; the bound promised is 30 s.
const (
	DefaultLeaderRetry = 5 * time.Second
	DefaultLeaderCheck = 5 * time.Second
	DefaultKeepalive   = 5 * time.Second
	keepaliveCount     = 3
)

// LeaderConfig is how an agent campaigns for the fleet's leadership.
type LeaderConfig struct {
	// URL is the catalog's connection string; the leader holds one
	// connection of its own, outside the Store's pool, for as long as it
	// leads.
	URL  string
	Host string
	// Retry is how often an agent that is not the leader tries again;
	// Check how often the leader makes sure its connection still stands
	// (a check that does not answer within Check loses the leadership);
	// Keepalive the TCP keepalive idle time and interval, set on both
	// ends of the connection. Zero: the defaults above.
	Retry, Check, Keepalive time.Duration
	// EvictAfter is how long the leader's session may go without its
	// check before another agent ends it (a leader whose process hangs
	// keeps its connection, and the lock, alive); 0: 4×Check.
	EvictAfter time.Duration
	Log        *slog.Logger
}

// Leader campaigns for the fleet's leadership with
// pg_try_advisory_lock on a dedicated connection, and runs the fleet's
// duties while it holds it. The lock lives as long as the session: a
// leader that dies, or whose host drops off the network, loses it when
// the server ends the session, and another agent takes it at its next
// try. A leader that cannot reach the server stops its duties at once,
// before the server can have given the lock to anyone else (its check
// fails within 2×Check, the server's keepalives need longer).
type Leader struct {
	cfg   LeaderConfig
	log   *slog.Logger
	leads atomic.Bool
	terms atomic.Int64
}

// NewLeader checks cfg and fills in its defaults.
func NewLeader(cfg LeaderConfig) (*Leader, error) {
	if cfg.Host == "" || cfg.URL == "" {
		return nil, errors.New("fleet leadership: URL and Host are required")
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultLeaderRetry
	}
	if cfg.Check <= 0 {
		cfg.Check = DefaultLeaderCheck
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.EvictAfter <= 0 {
		cfg.EvictAfter = 4 * cfg.Check
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Leader{cfg: cfg, log: cfg.Log}, nil
}

// Leads reports whether this agent holds the leadership now.
func (l *Leader) Leads() bool { return l.leads.Load() }

// Terms counts the times this agent took the leadership.
func (l *Leader) Terms() int64 { return l.terms.Load() }

// Run campaigns until ctx ends. Each time it takes the leadership it
// calls duties with a context cancelled when the leadership is lost (or
// ctx ends), and waits for duties to return before it campaigns again:
// no two terms' duties run at once in one agent. It returns when ctx
// ends, having released the lock.
func (l *Leader) Run(ctx context.Context, duties func(ctx context.Context)) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	down := "" // the last failure logged, to log an outage once
	for ctx.Err() == nil {
		if conn == nil {
			c, err := l.connect(ctx)
			if err != nil {
				down = l.logDown(down, err)
				l.sleep(ctx, l.cfg.Retry)
				continue
			}
			conn = c
		}
		got, err := l.tryLock(ctx, conn)
		if err != nil {
			closeConn(conn)
			conn = nil
			down = l.logDown(down, err)
			l.sleep(ctx, l.cfg.Retry)
			continue
		}
		if down != "" {
			l.log.Info("fleet catalog reachable again for leadership")
			down = ""
		}
		if !got {
			l.evictHung(ctx, conn)
			l.sleep(ctx, l.cfg.Retry)
			continue
		}
		lost := l.hold(ctx, conn, duties)
		if ctx.Err() != nil {
			l.release(conn)
			return
		}
		l.log.Warn("fleet leadership lost: fleet duties stopped", "host", l.cfg.Host, "error", leaderLine(lost))
		// The session may still hold the lock; closing it lets the server
		// know at once when it can still hear us.
		closeConn(conn)
		conn = nil
		l.sleep(ctx, l.cfg.Retry)
	}
}

// logDown logs a failure to reach the catalog once per outage.
func (l *Leader) logDown(last string, err error) string {
	line := leaderLine(err)
	if last == "" {
		l.log.Warn("fleet leadership: catalog unreachable; retrying", "retry", l.cfg.Retry, "error", line)
	}
	return line
}

// connect opens the leadership's connection: TCP keepalives on the
// client (so this agent notices a dead server) and asked of the server
// (so the server ends the session, and frees the lock, of a host that
// vanished without closing it).
func (l *Leader) connect(ctx context.Context) (*pgx.Conn, error) {
	cc, err := pgx.ParseConfig(l.cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("fleet leadership: the connection URL does not parse (%s)", redactParseError(err))
	}
	if !strings.Contains(l.cfg.URL, "connect_timeout") {
		cc.ConnectTimeout = DefaultConnectTimeout
	}
	ka := l.cfg.Keepalive
	d := &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: ka, Interval: ka, Count: keepaliveCount}}
	cc.DialFunc = d.DialContext
	secs := strconv.Itoa(max(1, int(ka/time.Second)))
	cc.RuntimeParams["application_name"] = leaderAppName(l.cfg.Host)
	// Ignored by the server on a Unix socket.
	cc.RuntimeParams["tcp_keepalives_idle"] = secs
	cc.RuntimeParams["tcp_keepalives_interval"] = secs
	cc.RuntimeParams["tcp_keepalives_count"] = strconv.Itoa(keepaliveCount)
	cc.RuntimeParams["tcp_user_timeout"] = strconv.Itoa(int(ka * (1 + keepaliveCount) / time.Millisecond))
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("fleet leadership: connect: %w", err)
	}
	return c, nil
}

// leaderAppNamePrefix marks the leadership's session in pg_stat_activity,
// which is how CurrentLeader finds the holder's host.
const leaderAppNamePrefix = "lifeboat leader "

func leaderAppName(host string) string {
	n := leaderAppNamePrefix + host
	if len(n) > 63 { // NAMEDATALEN-1: the server would cut it anyway
		n = n[:63]
	}
	return n
}

func (l *Leader) tryLock(ctx context.Context, conn *pgx.Conn) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Check)
	defer cancel()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderLockKey).Scan(&got); err != nil {
		return false, fmt.Errorf("fleet leadership: try the lock: %w", err)
	}
	return got, nil
}

// hold runs duties while the connection answers. It returns why it
// stopped leading (nil when ctx ended or duties returned), after duties
// have returned.
func (l *Leader) hold(ctx context.Context, conn *pgx.Conn, duties func(context.Context)) error {
	l.terms.Add(1)
	l.leads.Store(true)
	defer l.leads.Store(false)
	l.log.Info("fleet leadership taken: running the fleet duties", "host", l.cfg.Host)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		duties(dctx)
	}()
	tick := time.NewTicker(l.cfg.Check)
	defer tick.Stop()
	var lost error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-done:
			lost = errors.New("the fleet duties ended")
			break loop
		case <-tick.C:
			cctx, ccancel := context.WithTimeout(ctx, l.cfg.Check)
			err := conn.Ping(cctx)
			ccancel()
			if err != nil && ctx.Err() == nil {
				lost = fmt.Errorf("the leadership's connection does not answer: %w", err)
				break loop
			}
		}
	}
	cancel()
	<-done
	return lost
}

// release gives the lock back on a bounded context, so the next leader
// need not wait for the session to end.
func (l *Leader) release(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Check)
	defer cancel()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, leaderLockKey); err != nil {
		l.log.Warn("fleet leadership: release the lock (the session's end releases it)", "error", leaderLine(err))
	}
	l.log.Info("fleet leadership released", "host", l.cfg.Host)
}

// evictHung ends the session of a leader that has stopped checking its
// connection: its process hangs (stopped, swapping, deadlocked) while its
// kernel keeps the connection, and so the lock, alive. The leader checks
// every Check, which moves its session's state_change; one that has not
// moved for EvictAfter is terminated, which frees the lock for the next
// try. It takes the same role as the leader's (or pg_signal_backend);
// without it the hung leader stays until its process dies.
func (l *Leader) evictHung(ctx context.Context, conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Check)
	defer cancel()
	var pid int32
	var name string
	var silent *float64
	err := conn.QueryRow(ctx, `SELECT a.pid, a.application_name, extract(epoch FROM clock_timestamp() - a.state_change)::float8
		FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`, leaderLockKey).Scan(&pid, &name, &silent)
	if err != nil || silent == nil || *silent < l.cfg.EvictAfter.Seconds() {
		return
	}
	var ended bool
	if err := conn.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&ended); err != nil || !ended {
		l.log.Warn("fleet leadership: the leader has not checked in, and its session could not be ended",
			"leader", strings.TrimPrefix(name, leaderAppNamePrefix), "silent", time.Duration(*silent*float64(time.Second)).Round(time.Second),
			"error", leaderLine(err))
		return
	}
	l.log.Warn("fleet leadership: the leader had not checked in; its session was ended",
		"leader", strings.TrimPrefix(name, leaderAppNamePrefix), "silent", time.Duration(*silent*float64(time.Second)).Round(time.Second))
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

func (l *Leader) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// CurrentLeader returns the host whose agent holds the leadership now, ""
// when none does: the session holding the lock, named by its
// application_name.
func (s *Store) CurrentLeader(ctx context.Context) (string, error) {
	var name string
	err := s.pool.QueryRow(ctx, `SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`, leaderLockKey).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("fleet catalog: current leader: %w", err)
	}
	return strings.TrimPrefix(name, leaderAppNamePrefix), nil
}

// leaderLine is an error on one line, for a log attribute.
func leaderLine(err error) string {
	if err == nil {
		return ""
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
