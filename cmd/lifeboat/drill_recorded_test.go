package main

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const recordedCheckPolicy = `    drill:
      checks:
        - name: rows
          sql: "select count(*) from ledger"
          expect: "= recorded"
        - name: broken at backup
          sql: "select count(*) from no_such_table"
          expect: "= recorded"
`

// TestDrillRecordedValuesPGDump: a value recorded while the application
// writes is the dumped data's own (pg_dump dumps the snapshot the checks
// ran in), so the drill finds it equal; a check whose query failed at
// backup time fails the drill with the reason, and the backup was kept.
func TestDrillRecordedValuesPGDump(t *testing.T) {
	t.Parallel()
	e := newDumpEnv(t, nil, recordedCheckPolicy)
	e.pg.Psql(t, "app", "create table ledger (id bigserial primary key, pad text); insert into ledger (pad) select repeat('x', 200) from generate_series(1, 50000)")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var inserted atomic.Int64
	done := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctx, e.pg.DSN("app"))
		if err != nil {
			done <- err
			return
		}
		defer conn.Close(context.Background())
		for ctx.Err() == nil {
			if _, err := conn.Exec(ctx, "insert into ledger (pad) values ('during the dump')"); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			inserted.Add(1)
		}
		done <- nil
	}()
	// The writer is under way before the backup and goes on after it.
	eventually(10*time.Second, func() bool { return inserted.Load() > 0 })
	e.mustRun("backup", "dump")
	before := inserted.Load()
	eventually(10*time.Second, func() bool { return inserted.Load() > before })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if inserted.Load() == before {
		t.Fatal("the writer did not write after the backup: the test proves nothing")
	}
	res, rep := e.drillAsset("dump")
	if res.code == 0 || rep.Passed {
		t.Fatalf("a drill with a check that failed at backup passed: %s", res.stdout)
	}
	if c := checkNamed(t, rep, "rows"); !c.Passed || c.Got == "" {
		t.Errorf("rows: %+v", c)
	}
	if c := checkNamed(t, rep, "broken at backup"); c.Passed || !strings.Contains(c.Detail, "no_such_table") {
		t.Errorf("broken at backup: %+v", c)
	}
	// A recorded check added after the backup has nothing to compare with.
	text, _ := os.ReadFile(e.policy)
	text = []byte(strings.Replace(string(text), "      checks:\n", "      checks:\n        - name: added later\n          sql: \"select 1\"\n          expect: \"= recorded\"\n", 1))
	os.WriteFile(e.policy, text, 0o600)
	_, rep = e.drillAsset("dump")
	if c := checkNamed(t, rep, "added later"); c.Passed || !strings.Contains(c.Detail, "no value recorded at backup time") {
		t.Errorf("added later: %+v", c)
	}
}

// TestDrillRecordedValuesSQLite: the same for a SQLite asset under a
// writer: the value is taken on the copy that is stored.
func TestDrillRecordedValuesSQLite(t *testing.T) {
	t.Parallel()
	e, path := newSQLiteEnv(t)
	text, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.policy, append(text, []byte(strings.Replace(recordedCheckPolicy, "from no_such_table", "from missing", 1))...), 0o600); err != nil {
		t.Fatal(err)
	}
	db := ledgerDB(t, path, "wal")
	var committed atomic.Int64
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ledgerWriter(ctx, db, &committed) }()
	eventually(10*time.Second, func() bool { return committed.Load() > 0 })
	e.mustRun("backup", "staging-db")
	after := committed.Load()
	eventually(10*time.Second, func() bool { return committed.Load() > after })
	cancel()
	if err := <-done; err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	_, rep := e.drillAsset("staging-db")
	if c := checkNamed(t, rep, "rows"); !c.Passed || c.Got == "" || c.Got == "0" {
		t.Errorf("rows: %+v", c)
	}
	if c := checkNamed(t, rep, "broken at backup"); c.Passed || !strings.Contains(c.Detail, "missing") {
		t.Errorf("broken at backup: %+v", c)
	}
}
