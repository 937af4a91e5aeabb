package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// catalogOutage is how long the fleet catalog is down in
// TestFleetCatalogOutageWhileAgentsBackUp. The two minutes prove
// nothing more than several backoff rounds do (the shipper retries from
// 1 s up): LIFEBOAT_FLEET_OUTAGE=2m runs the full one.
func catalogOutage(t *testing.T) time.Duration {
	if v := os.Getenv("LIFEBOAT_FLEET_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LIFEBOAT_FLEET_OUTAGE: %v", err)
		}
		return d
	}
	return 8 * time.Second
}

// TestFleetCatalogOutageWhileAgentsBackUp stops the fleet catalog's server
// while two lifeboat serve agents back up every second: they go on
// backing up, and once the catalog is back every run each recorded
// locally is in the fleet catalog, once, as it ended, numbered in the
// order it was recorded.
func TestFleetCatalogOutageWhileAgentsBackUp(t *testing.T) {
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	url := fmt.Sprintf("postgres://postgres@/postgres?host=%s&port=%d&sslmode=disable", pg.SocketDir, pg.Port)
	agents := map[string]*env{"db-1": fleetFilesEnv(t, "db-1", url, "ledger"), "db-2": fleetFilesEnv(t, "db-2", url, "ledger")}
	var procs []*daemonProc
	for _, e := range agents {
		procs = append(procs, e.serve())
	}
	ok := func() map[string]int {
		n := map[string]int{}
		for _, r := range agents["db-1"].runs() {
			if r.Result == "ok" {
				n[r.Host]++
			}
		}
		return n
	}
	waitFor(t, 60*time.Second, "both agents' runs in the catalog", func() bool { n := ok(); return n["db-1"] >= 1 && n["db-2"] >= 1 },
		func() string { return fmt.Sprint(ok()) })

	local := func(host string) int {
		c, err := catalog.Open(t.Context(), catalog.Path(filepath.Join(agents[host].dir, "state")))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rs, err := c.Runs(t.Context(), catalog.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rs {
			if r.Result == catalog.OK {
				n++
			}
		}
		return n
	}
	pg.Stop(t)
	before := map[string]int{"db-1": local("db-1"), "db-2": local("db-2")}
	time.Sleep(catalogOutage(t)) // the outage itself: real agents on a real clock
	for host := range agents {
		if n := local(host); n <= before[host] {
			t.Errorf("%s recorded no backup while the catalog was down (%d before, %d after)", host, before[host], n)
		}
	}
	pg.Start(t)

	// Every local run arrives; then the agents stop, and what they
	// recorded last is shipped at their stop or at their next start.
	for _, d := range procs {
		if code := d.stop(time.Minute); code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, d.stderr)
		}
	}
	for _, e := range agents {
		d := e.serve()
		procs = append(procs, d)
	}
	conn, err := pgx.Connect(t.Context(), pg.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for host, e := range agents {
		c, err := catalog.Open(t.Context(), catalog.Path(filepath.Join(e.dir, "state")))
		if err != nil {
			t.Fatal(err)
		}
		// The runs up to the restart: the new serve adds more.
		rs, err := c.Runs(t.Context(), catalog.Filter{})
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := map[int64]catalog.Run{}
		for _, r := range rs {
			if r.Result != catalog.Running {
				want[r.ID] = r
			}
		}
		waitFor(t, 60*time.Second, host+"'s runs shipped", func() bool {
			got := map[int64]string{}
			rows, err := conn.Query(t.Context(), `SELECT id, result, snapshot FROM runs WHERE host = $1`, host)
			if err != nil {
				return false
			}
			for rows.Next() {
				var id int64
				var result, snap string
				rows.Scan(&id, &result, &snap)
				got[id] = result + "/" + snap
			}
			rows.Close()
			for id, r := range want {
				if got[id] != string(r.Result)+"/"+r.Snapshot {
					return false
				}
			}
			return true
		}, func() string { return fmt.Sprintf("%d runs recorded locally", len(want)) })
		// Once each: the key says so; and in order: the runs' ids, given
		// locally in the order they started, rise with their start.
		rows, err := conn.Query(t.Context(), `SELECT id, started FROM runs WHERE host = $1 ORDER BY id`, host)
		if err != nil {
			t.Fatal(err)
		}
		var last time.Time
		for rows.Next() {
			var id int64
			var started time.Time
			if err := rows.Scan(&id, &started); err != nil {
				t.Fatal(err)
			}
			if started.Before(last) {
				t.Errorf("%s: run %d started %v, before the run numbered ahead of it (%v)", host, id, started, last)
			}
			last = started
		}
		rows.Close()
		t.Logf("%s: %d runs recorded, every one in the fleet catalog after a %s outage", host, len(want), catalogOutage(t))
	}
	for _, d := range procs[len(agents):] {
		if code := d.stop(time.Minute); code != 0 {
			t.Fatalf("serve exited %d:\n%s", code, d.stderr)
		}
	}
}
