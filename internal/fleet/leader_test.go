package fleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Short intervals, so the tests wait on conditions for well under a
// second each; the defaults are in docs/fleet.md.
const (
	testRetry = 100 * time.Millisecond
	testCheck = 100 * time.Millisecond
	testStale = 1500 * time.Millisecond
)

// webhookSink is an alert receiver that counts what it is sent, by
// message: key, status and repeat.
type webhookSink struct {
	*httptest.Server
	mu   sync.Mutex
	got  map[string]int
	seen []string // in arrival order
}

func newWebhookSink(t *testing.T) *webhookSink {
	s := &webhookSink{got: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev alert.WebhookEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		m := fmt.Sprintf("%s %s #%d", ev.Key, ev.Status, ev.Repeat)
		s.mu.Lock()
		s.got[m]++
		s.seen = append(s.seen, m)
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *webhookSink) count(m string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[m]
}

// all lists the messages received, in order.
func (s *webhookSink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

// doubled lists the messages received more than once.
func (s *webhookSink) doubled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var d []string
	for m, n := range s.got {
		if n > 1 {
			d = append(d, fmt.Sprintf("%s (%d times)", m, n))
		}
	}
	return d
}

func (s *webhookSink) policy() *policy.Policy {
	return &policy.Policy{Alerts: []policy.Alert{{Kind: policy.AlertWebhook, Name: "oncall", URL: s.URL, Secret: "s3cret"}}}
}

// agent is one host's part in the fleet, in process: its store, its
// asset rows published as its checks would, its leadership campaign and
// duties.
type agent struct {
	host    string
	store   *fleet.Store
	leader  *fleet.Leader
	cancel  context.CancelFunc
	done    chan struct{}
	publish atomic.Bool // keep refreshing the asset rows
	// checks are the fleet checks this agent ran as leader.
	mu     sync.Mutex
	checks []fleet.FleetCheck
}

func startAgent(t *testing.T, c *pgtest.Cluster, host string, assets []fleet.Asset, pol *policy.Policy) *agent {
	t.Helper()
	a := &agent{host: host, store: openStore(t, c, host), done: make(chan struct{})}
	l, err := fleet.NewLeader(fleet.LeaderConfig{URL: c.DSN("postgres"), Host: host, Retry: testRetry, Check: testCheck})
	if err != nil {
		t.Fatal(err)
	}
	a.leader = l
	a.publish.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() {
		l.Run(ctx, func(ctx context.Context) {
			d := &fleet.Duties{Store: a.store, Host: host, Policy: func() *policy.Policy { return pol },
				Interval: testCheck, StaleAfter: testStale, Checked: func(fc fleet.FleetCheck) {
					a.mu.Lock()
					a.checks = append(a.checks, fc)
					a.mu.Unlock()
				}}
			d.Run(ctx)
		})
	})
	wg.Go(func() { // the agent's own checks, publishing its rows
		for ctx.Err() == nil {
			if a.publish.Load() {
				now := time.Now()
				rows := slices.Clone(assets)
				for i := range rows {
					rows[i].Updated = now
				}
				if err := a.store.Publish(ctx, rows); err != nil && ctx.Err() == nil {
					t.Errorf("%s: publish: %v", host, err)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(testCheck):
			}
		}
	})
	go func() { wg.Wait(); close(a.done) }()
	t.Cleanup(a.stop)
	return a
}

func (a *agent) stop() {
	a.cancel()
	<-a.done
}

// lastCheck is the newest fleet check this agent ran as leader.
func (a *agent) lastCheck() (fleet.FleetCheck, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.checks) == 0 {
		return fleet.FleetCheck{}, false
	}
	return a.checks[len(a.checks)-1], true
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leaders(agents []*agent) []*agent {
	var out []*agent
	for _, a := range agents {
		if a.leader.Leads() {
			out = append(out, a)
		}
	}
	return out
}

// backendOf is the server process of host's leadership session.
func backendOf(t *testing.T, s *fleet.Store, host string) int32 {
	t.Helper()
	var pid int32
	if err := s.Pool().QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`,
		"lifeboat leader "+host).Scan(&pid); err != nil {
		t.Fatalf("leadership session of %s: %v", host, err)
	}
	return pid
}

// TestThreeAgentsOneLeaderFailover is the fleet of the issue: three
// agents with their own assets and one PostgreSQL catalog. Exactly one
// leads; the fleet read shows every host's assets; the leader's death
// (its connection cut and its process gone) moves the fleet check to
// another agent within the bound; every alert, the agents' own and the
// fleet check's, reaches the webhook exactly once across the failover.
func TestThreeAgentsOneLeaderFailover(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	sink := newWebhookSink(t)
	pol := sink.policy()
	hosts := []string{"db-1", "db-2", "files-1"}
	var agents []*agent
	for i, h := range hosts {
		state := "ok"
		if i == 1 {
			state = "failing"
		}
		agents = append(agents, startAgent(t, c, h, []fleet.Asset{
			{Name: "main", Kind: "postgres", Tier: "gold", State: state},
			{Name: fmt.Sprintf("extra-%d", i), Kind: "files", State: "ok"},
		}, pol))
	}
	// db-2's own check finds its asset failing: its agent records the
	// alert, as serve's check does.
	failing := alert.Problem{Asset: "main", Check: "backup", Summary: "no backup since the slot at 02:00"}
	if err := agents[1].store.SyncAlerts(t.Context(), "db-2", fleet.OnHost("db-2", []alert.Problem{failing}), time.Now()); err != nil {
		t.Fatal(err)
	}

	// An asset db-1's agent published long ago and no longer has: gone
	// from its policy, not an agent gone silent.
	if err := agents[0].store.Publish(t.Context(), []fleet.Asset{{Name: "retired", Kind: "files", State: "ok",
		Updated: time.Now().Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader", 10*time.Second, func() bool { return len(leaders(agents)) == 1 })
	// Never two leaders while the others keep trying. (A leader starved
	// of CPU long enough may step down: for a moment none leads.)
	for range 10 {
		if l := leaders(agents); len(l) > 1 {
			t.Fatalf("%d leaders", len(l))
		}
		time.Sleep(testRetry)
	}
	var first *agent
	waitFor(t, "a leader", 10*time.Second, func() bool {
		l := leaders(agents)
		if len(l) == 1 {
			first = l[0]
		}
		return first != nil
	})
	if got, err := first.store.CurrentLeader(t.Context()); err != nil || got != first.host {
		t.Fatalf("CurrentLeader = %q, %v; want %s", got, err, first.host)
	}

	// The fleet read shows every host's assets.
	waitFor(t, "every host's assets in the fleet read", 5*time.Second, func() bool {
		as, err := first.store.Assets(t.Context())
		return err == nil && len(as) == 2*len(hosts)+1
	})
	fc, ok := first.lastCheck()
	waitFor(t, "a fleet check over every asset", 5*time.Second, func() bool {
		fc, ok = first.lastCheck()
		return ok && len(fc.Assets) == 2*len(hosts)+1 && fc.Failing == 1 && fc.Stale == 0
	})

	failKey := alert.FleetKey("db-2", failing)
	waitFor(t, "db-2's alert delivered", 5*time.Second, func() bool { return sink.count(failKey+" firing #0") == 1 })
	if d := sink.doubled(); len(sink.all()) != 1 || len(d) != 0 {
		t.Fatalf("before any agent went silent, sent %v; want db-2's alert alone", sink.all())
	}

	// A non-leader's agent goes silent: its rows go stale, and the
	// leader's fleet check raises one alert per asset.
	var quiet *agent
	for _, a := range agents {
		if a != first {
			quiet = a
			break
		}
	}
	quiet.publish.Store(false)
	staleKey := func(host, asset string) string {
		return alert.FleetKey(host, alert.Problem{Asset: asset, Check: fleet.CheckAgent})
	}
	waitFor(t, "the silent agent's assets alerted", 10*time.Second, func() bool {
		return sink.count(staleKey(quiet.host, "main")+" firing #0") == 1
	})

	// The leader dies: its session is cut, as the server ends a dead
	// host's, and its process is gone (nothing of it runs any more).
	var pid int32 = backendOf(t, first.store, first.host)
	killed := time.Now()
	if _, err := first.store.Pool().Exec(t.Context(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	first.stop()
	var next *agent
	waitFor(t, "the fleet check on another agent", 30*time.Second, func() bool {
		for _, a := range agents {
			if a == first {
				continue
			}
			if fc, ok := a.lastCheck(); ok && fc.Time.After(killed) {
				next = a
				return true
			}
		}
		return false
	})
	failover := time.Since(killed)
	t.Logf("failover: the fleet check resumed on %s %s after the leader's death", next.host, failover.Round(time.Millisecond))
	if failover > 30*time.Second {
		t.Fatalf("failover took %s; the bound is 30s", failover)
	}
	if l := leaders(agents); len(l) != 1 || l[0] != next {
		t.Fatalf("leaders after the failover: %d", len(l))
	}

	// The dead leader's assets go stale under the new leader; db-2's
	// problem clears. Each is delivered once.
	if err := agents[1].store.SyncAlerts(t.Context(), "db-2", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the dead leader's assets alerted, db-2's resolve sent", 10*time.Second, func() bool {
		return sink.count(staleKey(first.host, "main")+" firing #0") == 1 && sink.count(failKey+" resolved #0") == 1
	})
	// The silent agent speaks again: its alerts resolve.
	quiet.publish.Store(true)
	waitFor(t, "the silent agent's alerts resolved", 10*time.Second, func() bool {
		return sink.count(staleKey(quiet.host, "main")+" resolved #0") == 1
	})
	// A few more rounds: nothing is sent again.
	rounds := func() int {
		next.mu.Lock()
		defer next.mu.Unlock()
		return len(next.checks)
	}
	n := rounds()
	waitFor(t, "five more rounds", 5*time.Second, func() bool { return rounds() >= n+5 })
	if d := sink.doubled(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v\nall: %v", d, sink.all())
	}
	want := []string{failKey + " firing #0", failKey + " resolved #0",
		staleKey(quiet.host, "main") + " firing #0", staleKey(quiet.host, "main") + " resolved #0",
		staleKey(first.host, "main") + " firing #0"}
	for _, m := range want {
		if sink.count(m) != 1 {
			t.Errorf("%s: delivered %d times, want 1", m, sink.count(m))
		}
	}
	// Two terms in all, the first leader's and the next's: no agent lost
	// the leadership it held, and none was evicted, while it answered.
	var terms int64
	for _, a := range agents {
		terms += a.leader.Terms()
	}
	if terms != 2 {
		t.Fatalf("%d terms of leadership, want 2", terms)
	}
	var open int
	if err := next.store.Pool().QueryRow(t.Context(), `SELECT count(*) FROM alerts WHERE state = 'open' AND sent_at IS NULL`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("open alerts never sent: %d, %v", open, err)
	}
}

// TestAlertClaimsSendOnceUnderContention runs the delivery of many alerts
// from several would-be leaders at once, as two leaders could for a
// moment (the old one has not yet noticed its connection is gone): the
// claims let each message out once.
func TestAlertClaimsSendOnceUnderContention(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	sink := newWebhookSink(t)
	s := openStore(t, c, "db-1")
	var ps []alert.Problem
	for i := range 20 {
		ps = append(ps, alert.Problem{Asset: fmt.Sprintf("a%02d", i), Check: "backup", Summary: "failing"})
	}
	if err := s.SyncAlerts(t.Context(), "db-1", fleet.OnHost("db-1", ps), time.Now()); err != nil {
		t.Fatal(err)
	}
	n, err := alert.New(sink.policy().Alerts, "", alert.Options{Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	deliverAll := func() {
		var wg sync.WaitGroup
		for i := range 5 {
			wg.Go(func() {
				if err := s.DeliverAlerts(t.Context(), n, fmt.Sprintf("leader-%d", i), time.Now); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	deliverAll()
	if err := s.SyncAlerts(t.Context(), "db-1", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	deliverAll()
	deliverAll()
	if d := sink.doubled(); len(d) > 0 {
		t.Fatalf("delivered more than once: %v", d)
	}
	for _, p := range ps {
		for _, st := range []string{"firing", "resolved"} {
			if got := sink.count(alert.FleetKey("db-1", p) + " " + st + " #0"); got != 1 {
				t.Errorf("%s %s: %d deliveries", p.Asset, st, got)
			}
		}
	}
	var undone int
	if err := s.Pool().QueryRow(t.Context(), `SELECT count(*) FROM alerts WHERE state <> 'closed'`).Scan(&undone); err != nil || undone != 0 {
		t.Fatalf("alerts not closed after every resolve went: %d, %v", undone, err)
	}
}

// TestHungLeaderEvicted: a leader whose process hangs keeps its
// connection and the lock alive; the others end its session once it has
// not checked in for EvictAfter, and one of them leads.
func TestHungLeaderEvicted(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	cc, err := pgx.ParseConfig(c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = "lifeboat leader ghost"
	ghost, err := pgx.ConnectConfig(t.Context(), cc)
	if err != nil {
		t.Fatal(err)
	}
	defer ghost.Close(context.Background())
	var got bool
	if err := ghost.QueryRow(t.Context(), `SELECT pg_try_advisory_lock($1)`, int64(0x6c696665626f6174)).Scan(&got); err != nil || !got {
		t.Fatalf("ghost takes the lock: %v, %v", got, err)
	}
	locked := time.Now() // the ghost's session is silent from here
	s := openStore(t, c, "db-1")
	if h, err := s.CurrentLeader(t.Context()); err != nil || h != "ghost" {
		t.Fatalf("CurrentLeader = %q, %v", h, err)
	}
	l, err := fleet.NewLeader(fleet.LeaderConfig{URL: c.DSN("postgres"), Host: "db-1", Retry: testRetry, Check: testCheck,
		EvictAfter: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx, func(ctx context.Context) { <-ctx.Done() })
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "db-1 leads", 10*time.Second, l.Leads)
	if d := time.Since(locked); d < time.Second {
		t.Fatalf("db-1 led %s after the ghost locked, before the ghost was silent for EvictAfter", d)
	}
	if h, err := s.CurrentLeader(t.Context()); err != nil || h != "db-1" {
		t.Fatalf("CurrentLeader = %q, %v", h, err)
	}
}

// TestAlertRepeatsOnceAcrossLeaders: a destination's repeat goes out once
// per interval whichever leader sends it, on the catalog's record of the
// last send, not on a leader's memory.
func TestAlertRepeatsOnceAcrossLeaders(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	sink := newWebhookSink(t)
	s := openStore(t, c, "db-1")
	p := sink.policy()
	p.Alerts[0].Repeat = policy.Duration(time.Hour)
	n, err := alert.New(p.Alerts, "", alert.Options{Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	prob := alert.Problem{Asset: "ledger", Check: "wal_lag", Summary: "WAL lag 2h"}
	key := alert.FleetKey("db-1", prob)
	if err := s.SyncAlerts(t.Context(), "db-1", fleet.OnHost("db-1", []alert.Problem{prob}), t0); err != nil {
		t.Fatal(err)
	}
	deliver := func(at time.Time, leaders ...string) {
		t.Helper()
		var wg sync.WaitGroup
		for _, l := range leaders {
			wg.Go(func() {
				if err := s.DeliverAlerts(t.Context(), n, l, func() time.Time { return at }); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	deliver(t0, "a")
	deliver(t0.Add(30*time.Minute), "b") // a new leader, before the repeat is due
	deliver(t0.Add(61*time.Minute), "b", "c")
	deliver(t0.Add(62*time.Minute), "c")
	for r, want := range []int{1, 1, 0} {
		if got := sink.count(fmt.Sprintf("%s firing #%d", key, r)); got != want {
			t.Errorf("repeat %d: %d deliveries, want %d (all: %v)", r, got, want, sink.all())
		}
	}
}
