package fleet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestMain lets the package's tests start real PostgreSQL servers, which
// refuse to run as root.
func TestMain(m *testing.M) {
	os.Exit(pgtest.RunMain(m, pgtest.MainOptions{}))
}

// outage is how long the catalog is down in TestOutageLosesAndDoublesNothing.
// The issue asks for two minutes; the test proves the same with a
// shorter outage spanning several backoff rounds, so that `make test`
// is not lengthened by it: set LIFEBOAT_FLEET_OUTAGE=2m for the full one.
const outage = 6 * time.Second

func outageLength(t *testing.T) time.Duration {
	if v := os.Getenv("LIFEBOAT_FLEET_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LIFEBOAT_FLEET_OUTAGE: %v", err)
		}
		return d
	}
	return outage
}

func openStore(t *testing.T, c *pgtest.Cluster, host string) *fleet.Store {
	t.Helper()
	s, err := fleet.Open(t.Context(), fleet.Config{URL: c.DSN("postgres"), Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func openCatalog(t *testing.T) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(t.Context(), filepath.Join(t.TempDir(), catalog.FileName), catalog.WithOutbox())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func count(t *testing.T, s *fleet.Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func TestMigrateFromEmptyOnceByAgentsStartingTogether(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	const agents = 4
	var wg sync.WaitGroup
	errs := make([]error, agents)
	for i := range agents {
		wg.Go(func() {
			s, err := fleet.Open(t.Context(), fleet.Config{URL: c.DSN("postgres"), Host: fmt.Sprintf("db-%d", i)})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, c, "db-0") // a second open: nothing to do
	if n := count(t, s, `SELECT count(*) FROM schema_migrations`); n != fleet.SchemaVersion() {
		t.Errorf("schema_migrations has %d rows, want %d (one per migration, applied once)", n, fleet.SchemaVersion())
	}
	if n := count(t, s, `SELECT count(*) FROM hosts`); n != agents {
		t.Errorf("hosts has %d rows, want %d", n, agents)
	}
	// A schema newer than this build is refused, not misread.
	if _, err := s.Pool().Exec(t.Context(), `INSERT INTO schema_migrations (version) VALUES ($1)`, fleet.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Open(t.Context(), fleet.Config{URL: c.DSN("postgres"), Host: "db-9"}); err == nil || !strings.Contains(err.Error(), "upgrade lifeboat") {
		t.Errorf("open of a newer schema: %v, want a refusal asking to upgrade", err)
	}
}

// record writes n finished runs, a drill, a verify and n audit events
// into cat, and publishes one asset state.
func record(t *testing.T, cat *catalog.Catalog, asset string, n int, at time.Time) {
	t.Helper()
	ctx := t.Context()
	for i := range n {
		r := &catalog.Run{Asset: asset, Kind: "files", Trigger: "schedule", Slot: at, Start: at.Add(time.Duration(i) * time.Second),
			Result: catalog.Running}
		if err := cat.Insert(ctx, r); err != nil {
			t.Fatal(err)
		}
		r.End, r.Result, r.Snapshot, r.Bytes = r.Start.Add(time.Second), catalog.OK, fmt.Sprintf("%064x", i), int64(i)
		if err := cat.Update(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	d := &evidence.DrillReport{Version: evidence.Version, ID: asset + "-drill", Asset: asset, Started: at, Passed: true}
	if err := cat.RecordDrill(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := cat.RecordVerify(ctx, catalog.Verify{Repository: "main", Start: at, End: at.Add(time.Minute), OK: true, Objects: 7}); err != nil {
		t.Fatal(err)
	}
	appendAudit(t, cat, asset, n, at)
	if err := cat.Publish(ctx, catalog.OutboxAsset, asset, fleet.Asset{Name: asset, Kind: "files", Tier: "gold", State: "ok",
		LastBackup: at, Updated: at}); err != nil {
		t.Fatal(err)
	}
}

func appendAudit(t *testing.T, cat *catalog.Catalog, asset string, n int, at time.Time) {
	t.Helper()
	_, err := cat.AppendAudit(t.Context(), func(chain string, last uint64, h audit.Hash) ([]audit.Record, error) {
		var recs []audit.Record
		for i := range n {
			r, err := audit.Append(chain, last, h, &audit.Event{Time: at.Add(time.Duration(i) * time.Second), Type: "backup", Asset: asset,
				Outcome: "ok", Actor: audit.Actor{User: "test"}})
			if err != nil {
				return nil, err
			}
			recs = append(recs, r)
			last, h = r.Seq, r.Hash
		}
		return recs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTwoHostsNeverCollide(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	for _, host := range []string{"db-1", "db-2"} {
		cat := openCatalog(t)
		// Both hosts number their runs, verifies and audit events from 1.
		record(t, cat, "orders", 5, at)
		sh := &fleet.Shipper{Store: openStore(t, c, host), Catalog: cat}
		if err := sh.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n, err := cat.OutboxLen(t.Context()); err != nil || n != 0 {
			t.Fatalf("%s: outbox holds %d records after a flush (%v)", host, n, err)
		}
	}
	s := openStore(t, c, "reader")
	runs, err := s.Runs(t.Context(), catalog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, r := range runs {
		per[r.Host]++
		if r.Result != catalog.OK || r.End.IsZero() || r.Snapshot == "" {
			t.Errorf("run %d of %s arrived as %+v, want its end", r.ID, r.Host, r)
		}
	}
	if per["db-1"] != 5 || per["db-2"] != 5 || len(per) != 2 {
		t.Errorf("runs per host %v, want 5 each of db-1 and db-2", per)
	}
	one, err := s.Runs(t.Context(), catalog.Filter{Hosts: []string{"db-2"}, Limit: 3})
	if err != nil || len(one) != 3 || one[0].Host != "db-2" || one[0].Start.Before(one[2].Start) {
		t.Errorf("runs of db-2, limit 3: %v, %v; want 3 newest first", one, err)
	}
	drills, err := s.Drills(t.Context(), fleet.DrillFilter{Asset: "orders"})
	if err != nil || len(drills) != 2 || drills[0].Host == drills[1].Host {
		t.Errorf("drills: %+v, %v; want one per host", drills, err)
	}
	vs, err := s.LastVerifies(t.Context())
	if err != nil || len(vs) != 2 {
		t.Errorf("verifies: %+v, %v; want one per host", vs, err)
	}
	assets, err := s.Assets(t.Context())
	if err != nil || len(assets) != 2 || assets[0].Host != "db-1" || assets[1].Host != "db-2" || assets[0].State != "ok" {
		t.Errorf("assets: %+v, %v; want orders of db-1 and db-2", assets, err)
	}
	for _, host := range []string{"db-1", "db-2"} {
		var seqs []uint64
		var last audit.Hash
		err := s.AuditRecords(t.Context(), host, catalog.AuditFilter{}, func(r *audit.Record) error {
			seqs = append(seqs, r.Seq)
			last = r.Hash
			return nil
		})
		if err != nil || len(seqs) != 5 || seqs[0] != 1 || seqs[4] != 5 || last == (audit.Hash{}) {
			t.Errorf("audit events of %s: %v, %v; want 1…5", host, seqs, err)
		}
	}
}

// logCounter counts the shipper's log lines by message prefix.
type logCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCounter) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// TestOutageLosesAndDoublesNothing stops the catalog's server while an
// agent records runs and audit events, starts it again, and checks that
// every record arrived, in the order written, once.
func TestOutageLosesAndDoublesNothing(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	s := openStore(t, c, "db-1")
	cat := openCatalog(t)
	var logs logCounter
	sh := &fleet.Shipper{Store: s, Catalog: cat, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Interval: 50 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Batch: 7}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	writes := 0
	write := func() {
		writes++
		r := &catalog.Run{Asset: "orders", Kind: "files", Trigger: "schedule", Start: at.Add(time.Duration(writes) * time.Minute),
			End: at.Add(time.Duration(writes)*time.Minute + time.Second), Result: catalog.OK, Snapshot: fmt.Sprintf("%064x", writes)}
		if err := cat.Insert(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		appendAudit(t, cat, "orders", 1, r.Start)
		sh.Kick()
	}
	for range 10 {
		write()
	}
	waitShipped(t, cat, 30*time.Second)

	c.Stop(t) // pg_ctl stop: the catalog is gone
	end := time.Now().Add(outageLength(t))
	for time.Now().Before(end) {
		write() // the agent keeps recording
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := cat.OutboxLen(t.Context()); n == 0 {
		t.Fatal("nothing queued during the outage")
	}
	c.Start(t)
	for range 5 {
		write()
	}
	waitShipped(t, cat, 60*time.Second)
	// The shipper logs the recovery after it has emptied the outbox.
	for deadline := time.Now().Add(10 * time.Second); logs.count("fleet catalog reachable again") == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}

	if n := logs.count("fleet catalog unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs.buf.String())
	}
	if n := logs.count("fleet catalog reachable again"); n != 1 {
		t.Errorf("the recovery was logged %d times, want once:\n%s", n, logs.buf.String())
	}
	local, err := cat.Runs(t.Context(), catalog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := s.Runs(t.Context(), catalog.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != writes || len(shipped) != writes {
		t.Fatalf("%d runs written, %d in the local catalog, %d in the fleet catalog", writes, len(local), len(shipped))
	}
	for i := range local {
		if local[i].ID != shipped[i].ID || local[i].Snapshot != shipped[i].Snapshot || !local[i].Start.Equal(shipped[i].Start) {
			t.Fatalf("run %d: local %+v, shipped %+v", i, local[i], shipped[i])
		}
	}
	if n := count(t, s, `SELECT count(DISTINCT seq) FROM audit_events WHERE host = 'db-1'`); n != writes {
		t.Errorf("%d audit events in the fleet catalog, want %d", n, writes)
	}
	// In order: a record never commits before one written ahead of it.
	// Each batch is one transaction, so xmin (the inserting transaction)
	// never decreases along the sequence numbers.
	for _, q := range []string{
		`SELECT count(*) FROM (SELECT xmin::text::bigint AS x, lag(xmin::text::bigint) OVER (ORDER BY id) AS p FROM runs) r WHERE x < p`,
		`SELECT count(*) FROM (SELECT xmin::text::bigint AS x, lag(xmin::text::bigint) OVER (ORDER BY seq) AS p FROM audit_events) r WHERE x < p`,
	} {
		if n := count(t, s, q); n != 0 {
			t.Errorf("%d records arrived before one written earlier (%s)", n, q)
		}
	}
	// The chain arrived whole: it verifies as its host's own would.
	if err := verifyChain(t, s, "db-1"); err != nil {
		t.Error(err)
	}
}

func verifyChain(t *testing.T, s *fleet.Store, host string) error {
	t.Helper()
	var chain string
	if err := s.Pool().QueryRow(t.Context(), `SELECT chain FROM audit_events WHERE host = $1 ORDER BY time DESC, seq DESC LIMIT 1`, host).Scan(&chain); err != nil {
		return err
	}
	v := audit.NewVerifier(chain)
	err := s.AuditRecords(t.Context(), host, catalog.AuditFilter{}, func(r *audit.Record) error {
		if b := v.Add(r); b != nil {
			return b
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("the chain of %s as shipped: %w", host, err)
	}
	return nil
}

func waitShipped(t *testing.T, cat *catalog.Catalog, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := cat.OutboxLen(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records still queued after %s", n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashBetweenCommitAndDeleteDoublesNothing stops a shipper after the
// catalog committed a batch and before the batch left the outbox; the
// next shipper resumes from the catalog's shipped_seq.
func TestCrashBetweenCommitAndDeleteDoublesNothing(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	s := openStore(t, c, "db-1")
	cat := openCatalog(t)
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	record(t, cat, "orders", 4, at)
	queued, err := cat.OutboxLen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	crashed := errors.New("crash")
	first := &fleet.Shipper{Store: s, Catalog: cat, Batch: 5}
	first.SetAfterCommit(func() error { return crashed })
	if err := first.Flush(t.Context()); !errors.Is(err, crashed) {
		t.Fatalf("flush: %v, want the crash", err)
	}
	if n, _ := cat.OutboxLen(t.Context()); n != queued {
		t.Fatalf("outbox holds %d after the crash, want all %d (the delete never ran)", n, queued)
	}
	var shippedSeq int64
	if err := s.Pool().QueryRow(t.Context(), `SELECT shipped_seq FROM hosts WHERE host = 'db-1'`).Scan(&shippedSeq); err != nil || shippedSeq == 0 {
		t.Fatalf("shipped_seq %d (%v): the first batch did not commit", shippedSeq, err)
	}
	// A new process: a new store and shipper over the same files.
	second := &fleet.Shipper{Store: openStore(t, c, "db-1"), Catalog: cat, Batch: 5}
	if err := second.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n, _ := cat.OutboxLen(t.Context()); n != 0 {
		t.Errorf("outbox holds %d after the second flush", n)
	}
	for table, want := range map[string]int{"runs": 4, "drills": 1, "verifies": 1, "audit_events": 4, "assets": 1} {
		if n := count(t, s, `SELECT count(*) FROM `+table); n != want {
			t.Errorf("%s holds %d rows, want %d", table, n, want)
		}
	}
	// The second shipper resumed after the committed batch: the batch's
	// rows are still those its one transaction wrote.
	if n := count(t, s, `SELECT count(*) FROM hosts WHERE host = 'db-1' AND shipped_seq > $1`, shippedSeq); n != 1 {
		t.Errorf("shipped_seq did not move past the committed batch")
	}
	if err := verifyChain(t, s, "db-1"); err != nil {
		t.Error(err)
	}
}

// TestTwoAgentsUnderOneHostName: an agent whose outbox is not the one
// the catalog has been hearing from under its host name is refused.
func TestTwoAgentsUnderOneHostName(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	at := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	a, b := openCatalog(t), openCatalog(t)
	record(t, a, "orders", 2, at)
	record(t, b, "orders", 2, at)
	if err := (&fleet.Shipper{Store: openStore(t, c, "db-1"), Catalog: a}).Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	err := (&fleet.Shipper{Store: openStore(t, c, "db-1"), Catalog: b}).Flush(t.Context())
	if !errors.Is(err, fleet.ErrShipConflict) {
		t.Fatalf("second agent under db-1: %v, want %v", err, fleet.ErrShipConflict)
	}
	if n, _ := b.OutboxLen(t.Context()); n == 0 {
		t.Error("the refused agent's outbox was emptied")
	}
	// Once the first has been silent past OutboxTakeover, the other is a
	// rebuilt db-1 and ships from its start.
	s := openStore(t, c, "db-1")
	if _, err := s.Pool().Exec(t.Context(), `UPDATE hosts SET shipped_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if err := (&fleet.Shipper{Store: s, Catalog: b}).Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The rebuilt catalog numbers its runs, verifies and audit events from
	// 1 again: they sit beside the first catalog's, never over them.
	if n := count(t, s, `SELECT count(*) FROM runs WHERE host = 'db-1'`); n != 4 {
		t.Errorf("db-1 has %d runs after a rebuilt state_dir shipped, want both catalogs' 2 + 2", n)
	}
	if n := count(t, s, `SELECT count(*) FROM verifies WHERE host = 'db-1'`); n != 2 {
		t.Errorf("db-1 has %d verifies, want 2", n)
	}
	if n := count(t, s, `SELECT count(DISTINCT chain) FROM audit_events WHERE host = 'db-1'`); n != 2 {
		t.Errorf("db-1 has %d audit chains, want 2", n)
	}
	if err := verifyChain(t, s, "db-1"); err != nil {
		t.Error(err)
	}
}
