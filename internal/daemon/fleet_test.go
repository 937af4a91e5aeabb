package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestFleetAgent: in a fleet the daemon hands its checks' problems to
// Config.Alerts and sends nothing to the destinations itself; it runs
// Config.Fleet for as long as it serves, with the policy in force
// (reloads included), and stops it at shutdown.
func TestFleetAgent(t *testing.T) {
	var direct atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { direct.Add(1) }))
	defer hook.Close()
	alerts := fmt.Sprintf("host: db-1\ncheck: { interval: 5m }\nalerts:\n  - kind: webhook\n    url: %s\n    secret: s3cret\n", hook.URL)
	h := newHarness(t, asset("db", ""), alerts)
	h.cfg.Check = func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error) {
		return []health.Result{{Asset: "db", Check: health.CheckBackup, OK: false, Message: "no backup since the slot"}}, nil
	}
	var mu sync.Mutex
	var got []alert.Problem
	h.cfg.Alerts = func(ctx context.Context, p *policy.Policy, ps []alert.Problem) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, ps...)
		return nil
	}
	var current atomic.Pointer[func() *policy.Policy]
	stopped := make(chan struct{})
	h.cfg.Fleet = func(ctx context.Context, pol func() *policy.Policy) {
		current.Store(&pol)
		<-ctx.Done()
		close(stopped)
	}
	h.start()
	h.waitFor("the check's problem handed to Alerts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1 && got[0].Asset == "db" && got[0].Check == health.CheckBackup
	})
	h.waitFor("the fleet started", func() bool { return current.Load() != nil })
	if p := (*current.Load())(); p.Fleet.Host != "db-1" || p.Check.Interval != policy.Duration(5*time.Minute) {
		t.Fatalf("the fleet sees the policy %+v", p.Fleet)
	}
	h.writePolicy(asset("db", ""), "host: db-1\ncheck: { interval: 7m }\n")
	h.d.Reload()
	h.waitFor("the fleet to see the reloaded policy", func() bool {
		return (*current.Load())().Check.Interval == policy.Duration(7*time.Minute)
	})
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the fleet still runs after the daemon stopped")
	}
	if n := direct.Load(); n != 0 {
		t.Fatalf("the daemon sent %d alerts itself", n)
	}
}

// TestDrillHost: with drill_host, only the agent it names schedules the
// drills, the platform exercise's too; the backups are every agent's own.
func TestDrillHost(t *testing.T) {
	t.Parallel()
	drill := asset("db", everyFive+"    drill:\n      schedule: \"0 * * * *\"\n")
	for _, tc := range []struct {
		top    string
		drills bool
	}{
		{"host: db-1\n", true},
		{"host: db-1\ndrill_host: db-1\n", true},
		{"host: db-1\ndrill_host: drills-1\n", false},
	} {
		h := newHarness(t, drill, tc.top+"platform_drill: {schedule: \"0 4 * * 0\"}\n")
		p, err := h.cfg.LoadPolicy()
		if err != nil {
			t.Fatal(err)
		}
		jobs, err := Jobs(p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, j := range jobs {
			names = append(names, j.Asset)
		}
		want := "[db]"
		if tc.drills {
			want = "[db db#drill #platform]"
		}
		if fmt.Sprint(names) != want {
			t.Errorf("%q: jobs %v, want %s", tc.top, names, want)
		}
	}
}

// TestFleetCatalogDownAgentPagesItself: while Config.Alerts cannot record
// the problems (the fleet catalog is out of reach), the agent delivers
// them to the destinations itself; once the catalog takes them again, it
// resolves what it opened, and the leader's delivery takes over.
func TestFleetCatalogDownAgentPagesItself(t *testing.T) {
	statuses := make(chan string, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Status string `json:"status"`
		}
		json.NewDecoder(r.Body).Decode(&msg)
		statuses <- msg.Status
	}))
	defer hook.Close()
	h := newHarness(t, asset("db", ""), fmt.Sprintf("host: db-1\ncheck: { interval: 5m }\nalerts:\n  - kind: webhook\n    url: %s\n    secret: s3cret\n    repeat: 0s\n", hook.URL))
	h.cfg.Check = func(ctx context.Context, p *policy.Policy, now time.Time) ([]health.Result, error) {
		return []health.Result{{Asset: "db", Check: health.CheckBackup, OK: false, Message: "no backup since the slot"}}, nil
	}
	var down atomic.Bool
	down.Store(true)
	var recorded atomic.Int32
	h.cfg.Alerts = func(ctx context.Context, p *policy.Policy, ps []alert.Problem) error {
		if down.Load() {
			return errors.New("fleet catalog: connect: connection refused")
		}
		recorded.Add(1)
		return nil
	}
	h.start()
	if s := <-statuses; s != "firing" {
		t.Fatalf("with the catalog down, the agent sent %q, want its own page (firing)", s)
	}
	down.Store(false)
	h.advanceTo(t0.Add(5 * time.Minute))
	h.waitFor("the problem recorded in the catalog", func() bool { return recorded.Load() == 1 })
	if s := <-statuses; s != "resolved" {
		t.Fatalf("after the catalog came back, the agent sent %q, want the resolve of its own page", s)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-statuses:
		t.Fatalf("the agent sent %q more after the catalog took the alerts over", s)
	default:
	}
}
