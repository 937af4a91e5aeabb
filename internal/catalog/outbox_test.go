package catalog

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

func TestNoOutboxWithoutAFleetCatalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := open(t, filepath.Join(t.TempDir(), FileName))
	if err := c.Insert(ctx, &Run{Asset: "a", Kind: "files", Trigger: "manual", Start: base, Result: OK}); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(ctx, OutboxAsset, "a", map[string]string{"state": "ok"}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.OutboxLen(ctx); err != nil || n != 0 {
		t.Errorf("outbox holds %d (%v), want nothing", n, err)
	}
}

func TestOutboxQueuesEveryWriteInOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := Open(ctx, filepath.Join(t.TempDir(), FileName), WithOutbox())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := &Run{Asset: "a", Kind: "files", Trigger: "schedule", Slot: base, Start: base, Result: Running}
	if err := c.Insert(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.End, r.Result, r.Snapshot = base.Add(time.Minute), OK, "abc"
	if err := c.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := c.Insert(ctx, &Run{Asset: "b", Kind: "files", Trigger: "schedule", Start: base, Result: Running}); err != nil {
		t.Fatal(err)
	}
	if n, err := c.AbortRunning(ctx, base.Add(time.Hour), "died"); err != nil || n != 1 {
		t.Fatalf("abort: %d, %v", n, err)
	}
	d := &evidence.DrillReport{Version: evidence.Version, ID: "d1", Asset: "a", Started: base, Passed: true}
	if err := c.RecordDrill(ctx, d); err != nil {
		t.Fatal(err)
	}
	// A write that fails queues nothing: the record and its row commit
	// together.
	if err := c.RecordDrill(ctx, d); err == nil {
		t.Fatal("a second drill report with the same id was accepted")
	}
	if err := c.RecordVerify(ctx, Verify{Repository: "main", Start: base, End: base, OK: true}); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"failing", "ok"} {
		if err := c.Publish(ctx, OutboxAsset, "a", map[string]string{"state": state}); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := c.Outbox(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, row := range rows {
		got = append(got, row.Type+" "+row.Key)
	}
	want := []string{"run 1", "run 1", "run 2", "run 2", "drill d1", "verify 1", "asset a"}
	if len(got) != len(want) {
		t.Fatalf("outbox %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("outbox %q, want %q", got, want)
		}
	}
	var ended Run
	if err := json.Unmarshal(rows[1].Payload, &ended); err != nil || ended.Result != OK || ended.Snapshot != "abc" || !ended.Start.Equal(base) {
		t.Errorf("the update queued %+v (%v), want the whole run as it ended", ended, err)
	}
	var aborted Run
	if err := json.Unmarshal(rows[3].Payload, &aborted); err != nil || aborted.Result != Aborted {
		t.Errorf("the abort queued %+v (%v)", aborted, err)
	}
	if string(rows[6].Payload) != `{"state":"ok"}` {
		t.Errorf("published %s, want only the newest state", rows[6].Payload)
	}
	// Shipped rows go; their numbers are never given again, even once
	// the outbox is empty.
	last := rows[len(rows)-1].Seq
	if err := c.Shipped(ctx, last); err != nil {
		t.Fatal(err)
	}
	if err := c.Insert(ctx, &Run{Asset: "a", Kind: "files", Trigger: "manual", Start: base, Result: OK}); err != nil {
		t.Fatal(err)
	}
	rows, err = c.Outbox(ctx, 0, 100)
	if err != nil || len(rows) != 1 || rows[0].Seq <= last {
		t.Errorf("after shipping up to %d: %+v (%v), want one row numbered after it", last, rows, err)
	}
	id1, err := c.OutboxID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id2, _ := c.OutboxID(ctx); id1 == "" || id1 != id2 {
		t.Errorf("outbox id %q then %q, want one stable id", id1, id2)
	}
}
