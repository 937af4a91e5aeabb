package repo

import (
	"context"
	"errors"
	"testing"
	"time"
)

// shiftClock makes r's clock run ahead of the real one by *offset, so that
// tests can move past grace periods; pack modification times stay real.
func shiftClock(r *Repository, offset *time.Duration) {
	r.Clock = func() time.Time { return time.Now().Add(*offset) }
}

func mustVerify(t *testing.T, r *Repository) *VerifyReport {
	t.Helper()
	rep, err := r.Verify(context.Background(), VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("verify: %v", rep.Problems)
	}
	return rep
}

func TestSweepDeletesOnlyAfterGrace(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	var off time.Duration
	shiftClock(r, &off)
	s1 := backupFiles(t, r, "a", map[string][]byte{"one": compressible(300<<10, 1)})
	s2 := backupFiles(t, r, "a", map[string][]byte{"two": compressible(300<<10, 2)})
	if err := r.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	sweep := func(snaps ...*Snapshot) *SweepReport {
		t.Helper()
		rep, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: snaps})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// Young packs are never judged.
	if rep := sweep(s2); len(rep.Condemned)+len(rep.Deleted) != 0 || rep.Young != 1 {
		t.Fatalf("fresh repository: condemned %d, deleted %d, young %d; want 0, 0, 1", len(rep.Condemned), len(rep.Deleted), rep.Young)
	}
	off = 2 * time.Hour
	rep := sweep(s2)
	if len(rep.Condemned) != 1 || len(rep.Deleted) != 0 {
		t.Fatalf("first sweep: condemned %d, deleted %d; want 1, 0", len(rep.Condemned), len(rep.Deleted))
	}
	condemned := rep.Condemned[0].Name
	off += 30 * time.Minute
	if rep := sweep(s2); len(rep.Condemned) != 1 || len(rep.Deleted) != 0 {
		t.Fatalf("sweep within the grace period deleted: %+v", rep)
	}
	dry, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2}, DryRun: true})
	if err != nil || len(dry.Deleted) != 0 {
		t.Fatalf("dry run inside grace: %v %+v", err, dry)
	}
	off += time.Hour
	dry, err = r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2}, DryRun: true})
	if err != nil || len(dry.Deleted) != 1 {
		t.Fatalf("dry run past grace: %v %+v", err, dry)
	}
	if _, err := r.be.Stat(ctx, condemned); err != nil {
		t.Fatalf("dry run deleted %s: %v", condemned, err)
	}
	rep = sweep(s2)
	if len(rep.Deleted) != 1 || rep.Deleted[0].Name != condemned || rep.IndexesRewritten == 0 {
		t.Fatalf("sweep past grace: %+v, want %s deleted and its index rewritten", rep, condemned)
	}
	if _, err := r.be.Stat(ctx, condemned); err == nil {
		t.Fatalf("%s still stored", condemned)
	}
	mustVerify(t, r)
	if _, err := restoreTo(t, r, s2, false, t.TempDir()); err != nil {
		t.Fatalf("restore the kept snapshot: %v", err)
	}
}

func TestSweepKeepsPacksOfSnapshotsItJudges(t *testing.T) {
	// A snapshot deleted in this very run still counts: a backup may have
	// taken it as its parent.
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	off := 2 * time.Hour
	shiftClock(r, &off)
	s1 := backupFiles(t, r, "a", map[string][]byte{"one": compressible(100<<10, 1)})
	if err := r.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.UsedPacks != 1 || len(rep.Condemned) != 0 {
		t.Fatalf("got %+v, want the pack used", rep)
	}
}

func TestCommitRefusesCondemnedData(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	var off time.Duration
	shiftClock(r, &off)
	keep := backupFiles(t, r, "a", map[string][]byte{"base": compressible(100<<10, 1)})
	// A backup starts and writes its data, then stalls before committing
	// while another host, hours ahead, sweeps twice.
	view, err := r.OpenWriteView(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	stalled := writeFiles(t, r, view.Index, "a", map[string][]byte{"late": compressible(200<<10, 3)})
	off = 2 * time.Hour
	for range 2 {
		if _, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{keep}}); err != nil {
			t.Fatal(err)
		}
		off += 2 * time.Hour
	}
	err = r.CommitSnapshot(ctx, view, stalled)
	if !errors.Is(err, ErrSwept) {
		t.Fatalf("commit after its data was swept: %v, want ErrSwept", err)
	}
	ids, err := r.SnapshotIDs(ctx)
	if err != nil || len(ids) != 1 {
		t.Fatalf("snapshots after the refused commit: %v %v, want only the kept one", ids, err)
	}
	mustVerify(t, r)
	// A backup that starts now does not reuse condemned data and commits.
	view, err = r.OpenWriteView(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh := writeFiles(t, r, view.Index, "a", map[string][]byte{"late": compressible(200<<10, 3)})
	if err := r.CommitSnapshot(ctx, view, fresh); err != nil {
		t.Fatalf("commit of a fresh backup: %v", err)
	}
	mustVerify(t, r)
	if _, err := restoreTo(t, r, fresh, false, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestCommitAfterCondemnationWithoutDeletionAlsoRefuses(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	var off time.Duration
	shiftClock(r, &off)
	view, err := r.OpenWriteView(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := writeFiles(t, r, view.Index, "a", map[string][]byte{"x": compressible(100<<10, 4)})
	off = 2 * time.Hour
	rep, err := r.Sweep(ctx, SweepOptions{Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Condemned) == 0 {
		t.Fatalf("nothing condemned: %+v", rep)
	}
	if err := r.CommitSnapshot(ctx, view, s); !errors.Is(err, ErrSwept) {
		t.Fatalf("commit of condemned data: %v, want ErrSwept", err)
	}
}

func TestLiveLockProtectsNewPacks(t *testing.T) {
	ctx := context.Background()
	r, _, _ := newTestRepo(t)
	var off time.Duration
	shiftClock(r, &off)
	lock, err := r.Lock(ctx, "asset/a", "backup of a", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Unlock()
	view, err := r.OpenWriteView(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := writeFiles(t, r, view.Index, "a", map[string][]byte{"x": compressible(100<<10, 5)})
	// Past the grace period, but the lock is refreshed (young): its packs stay.
	off = 10 * time.Minute
	rep, err := r.Sweep(ctx, SweepOptions{Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Condemned) != 0 || rep.Young == 0 {
		t.Fatalf("packs under a live lock judged: %+v", rep)
	}
	if err := r.CommitSnapshot(ctx, view, s); err != nil {
		t.Fatal(err)
	}
}

func TestMarkTimeFromName(t *testing.T) {
	at := time.Date(2026, 11, 23, 4, 5, 6, 7, time.UTC)
	got, ok := markTime(markName(at))
	if !ok || !got.Equal(at) {
		t.Fatalf("markTime(markName(%s)) = %s, %v", at, got, ok)
	}
	if _, ok := markTime("marks/not-a-time"); ok {
		t.Fatal("a malformed mark name was given a time")
	}
}
