package metrics

import (
	"sync/atomic"
	"testing"
)

// TestWatchFleetLeader: the gauge follows the leadership at each scrape.
func TestWatchFleetLeader(t *testing.T) {
	t.Parallel()
	m := New()
	url := serve(t, m)
	var leads atomic.Bool
	if err := m.WatchFleetLeader(leads.Load); err != nil {
		t.Fatal(err)
	}
	if v, ok := scrape(t, url)["lifeboat_fleet_leader{}"]; !ok || v != 0 {
		t.Fatalf("not leading: lifeboat_fleet_leader = %v (present %v)", v, ok)
	}
	leads.Store(true)
	if v := scrape(t, url)["lifeboat_fleet_leader{}"]; v != 1 {
		t.Fatalf("leading: lifeboat_fleet_leader = %v", v)
	}
}
