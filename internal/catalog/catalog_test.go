package catalog

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

func open(t *testing.T, path string) *Catalog {
	t.Helper()
	c, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var base = time.Date(2024, 5, 5, 3, 30, 0, 0, time.UTC)

func TestRoundTripAndOrder(t *testing.T) {
	ctx := context.Background()
	c := open(t, filepath.Join(t.TempDir(), "state", FileName))
	runs := []*Run{
		{Asset: "dump", Kind: "pg_dump", Trigger: "schedule", Slot: base, Start: base.Add(time.Second), Result: Running},
		{Asset: "files", Kind: "files", Trigger: "catch-up", Slot: base.Add(-time.Hour), Start: base.Add(2 * time.Second), Result: Running},
		{Asset: "dump", Kind: "pg_dump", Trigger: "schedule", Slot: base.Add(time.Hour), Start: base.Add(time.Hour),
			End: base.Add(time.Hour), Result: Skipped, Error: "run 1 still going"},
	}
	for _, r := range runs {
		if err := c.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	r := runs[0]
	r.End, r.Result, r.Snapshot, r.Bytes, r.BytesStored = base.Add(time.Minute), OK, "ab12", 1<<30, 12345
	r.Output, r.HookOutput = "snapshot ab12 of dump", "[pre]\nflushed\n"
	if err := c.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := c.Runs(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != runs[2].ID || got[1].ID != runs[1].ID || got[2].ID != runs[0].ID {
		t.Fatalf("not newest first: %+v", got)
	}
	if fmt.Sprintf("%+v", got[2]) != fmt.Sprintf("%+v", *r) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got[2], *r)
	}
	if got[1].End.IsZero() == false || got[1].Result != Running {
		t.Fatalf("a running run: %+v", got[1])
	}
	dump, _ := c.Runs(ctx, Filter{Assets: []string{"dump"}, Limit: 1})
	if len(dump) != 1 || dump[0].ID != runs[2].ID {
		t.Fatalf("asset filter with limit: %+v", dump)
	}
	if err := c.Update(ctx, &Run{ID: 999, Asset: "x"}); err == nil {
		t.Fatal("update of an unknown run succeeded")
	}
}

func TestLastScheduled(t *testing.T) {
	ctx := context.Background()
	c := open(t, filepath.Join(t.TempDir(), FileName))
	for _, r := range []Run{
		{Asset: "a", Slot: base, Result: OK},
		{Asset: "a", Slot: base.Add(24 * time.Hour), Result: Aborted},
		{Asset: "b", Slot: base, Result: Failed},
		{Asset: "b", Slot: base.Add(time.Hour), Result: Skipped},
		{Asset: "c", Slot: base.Add(time.Hour), Result: Running},
		{Asset: "d", Slot: base, Result: Aborted},
		{Asset: "d", Slot: base, Result: OK}, // same slot, later run
		{Asset: "m", Result: OK},             // manual: no slot
	} {
		r.Kind, r.Trigger, r.Start = "files", "schedule", base
		if err := c.Insert(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	last, err := c.LastScheduled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for a, r := range last {
		got[a] = fmt.Sprintf("%s %s", r.Slot.Format(time.RFC3339), r.Result)
	}
	want := map[string]string{"a": "2024-05-06T03:30:00Z aborted", "b": "2024-05-05T03:30:00Z failed",
		"c": "2024-05-05T04:30:00Z running", "d": "2024-05-05T03:30:00Z ok"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("last scheduled %v, want %v", got, want)
	}
	n, err := c.AbortRunning(ctx, base.Add(48*time.Hour), "the daemon stopped")
	if err != nil || n != 1 {
		t.Fatalf("AbortRunning: %d, %v", n, err)
	}
	runs, _ := c.Runs(ctx, Filter{Assets: []string{"c"}})
	if runs[0].Result != Aborted || runs[0].Error != "the daemon stopped" || !runs[0].End.Equal(base.Add(48*time.Hour)) {
		t.Fatalf("closed run: %+v", runs[0])
	}
}

func TestSchemaVersionAndWAL(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	c := open(t, path)
	if err := c.Insert(ctx, &Run{Asset: "a", Kind: "files", Trigger: "manual", Start: base, Result: OK}); err != nil {
		t.Fatal(err)
	}
	var v int
	var mode string
	c.db.QueryRow("PRAGMA user_version").Scan(&v)
	c.db.QueryRow("PRAGMA journal_mode").Scan(&mode)
	if v != schemaVersion() || mode != "wal" {
		t.Fatalf("user_version %d, journal_mode %s", v, mode)
	}
	c.Close()

	// Opened again: nothing migrates twice, nothing is lost.
	c = open(t, path)
	if runs, err := c.Runs(ctx, Filter{}); err != nil || len(runs) != 1 {
		t.Fatalf("reopened: %v %v", runs, err)
	}
	// A catalog from a newer Lifeboat is refused, not misread.
	c.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion()+1))
	c.Close()
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), "upgrade lifeboat") {
		t.Fatalf("open of a newer catalog: %v", err)
	}
}

func TestFailedMigrationChangesNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	open(t, path).Close()
	saved := migrations
	defer func() { migrations = saved }()
	migrations = append(append([]string{}, saved...), "ALTER TABLE runs ADD COLUMN extra TEXT; SELECT * FROM no_such_table")
	if _, err := Open(ctx, path); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", len(saved)+1)) {
		t.Fatalf("broken migration: %v", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v, extra int
	db.QueryRow("PRAGMA user_version").Scan(&v)
	db.QueryRow("SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'extra'").Scan(&extra)
	if v != len(saved) || extra != 0 {
		t.Fatalf("after a failed migration: user_version %d, extra column %d", v, extra)
	}
}

// TestConcurrentWriters: the daemon's jobs write from many goroutines
// while another process (here a second handle) reads and writes.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	a, b := open(t, path), open(t, path)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := a
			if i%2 == 1 {
				c = b
			}
			for j := range 5 {
				r := &Run{Asset: fmt.Sprint("asset", i), Kind: "files", Trigger: "schedule", Start: base.Add(time.Duration(j) * time.Second), Result: Running}
				if err := c.Insert(ctx, r); err != nil {
					errs <- err
					return
				}
				r.Result, r.End = OK, r.Start.Add(time.Second)
				if err := c.Update(ctx, r); err != nil {
					errs <- err
					return
				}
				if _, err := c.Runs(ctx, Filter{Limit: 5}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if runs, _ := a.Runs(ctx, Filter{}); len(runs) != 100 {
		t.Fatalf("%d runs recorded, want 100", len(runs))
	}
}

// TestDrillsAndVerifies: drill reports come back whole and newest first,
// a report is never overwritten, and the last verify of each repository
// is the newest one.
func TestDrillsAndVerifies(t *testing.T) {
	ctx := context.Background()
	c := open(t, filepath.Join(t.TempDir(), FileName))
	t0 := time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC)
	for i, passed := range []bool{true, false, true} {
		r := &evidence.DrillReport{Version: evidence.Version, ID: fmt.Sprintf("d%d", i), Asset: "ledger", Kind: "postgres",
			Started: t0.Add(time.Duration(i) * time.Hour), Passed: passed, RTOSeconds: float64(10 + i),
			Phases: []evidence.Phase{{Name: evidence.PhaseFetch, Seconds: 1.5}}}
		if err := c.RecordDrill(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RecordDrill(ctx, &evidence.DrillReport{Version: evidence.Version, ID: "d0", Asset: "ledger", Started: t0}); err == nil {
		t.Fatal("a second report with the same ID was accepted")
	}
	all, err := c.Drills(ctx, DrillFilter{Asset: "ledger"})
	if err != nil || len(all) != 3 || all[0].ID != "d2" || all[1].Passed || all[2].RTOSeconds != 10 || all[2].Phase(evidence.PhaseFetch) != 1.5 {
		t.Fatalf("drills: %+v %v", all, err)
	}
	if since, _ := c.Drills(ctx, DrillFilter{Since: t0.Add(90 * time.Minute)}); len(since) != 1 || since[0].ID != "d2" {
		t.Fatalf("drills since: %+v", since)
	}
	if none, _ := c.Drills(ctx, DrillFilter{Asset: "other"}); len(none) != 0 {
		t.Fatalf("drills of another asset: %+v", none)
	}

	for i, ok := range []bool{true, false} {
		v := Verify{Repository: "main", Start: t0.Add(time.Duration(i) * time.Hour), End: t0.Add(time.Duration(i)*time.Hour + time.Minute), OK: ok, Objects: 5}
		if !ok {
			v.Error = "pack 1234: damaged"
		}
		if err := c.RecordVerify(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	last, err := c.LastVerify(ctx)
	if err != nil || len(last) != 1 || last["main"].OK || last["main"].Error != "pack 1234: damaged" || !last["main"].Start.Equal(t0.Add(time.Hour)) {
		t.Fatalf("last verify: %+v %v", last, err)
	}
}

// TestFilesArePrivate: the database and the WAL and shared-memory files
// SQLite makes beside it are readable by their owner only, whatever the
// umask; a catalog an older version left world-readable is tightened.
func TestFilesArePrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	check := func(path string) {
		t.Helper()
		c := open(t, path)
		if err := c.Insert(ctx, &Run{Asset: "a", Kind: "files", Trigger: "manual", Start: base, Result: OK}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
			}
		}
		c.Close()
	}
	check(filepath.Join(t.TempDir(), FileName))

	old := filepath.Join(t.TempDir(), FileName)
	c := open(t, old)
	c.Close()
	if err := os.Chmod(old, 0o644); err != nil {
		t.Fatal(err)
	}
	check(old)
}
