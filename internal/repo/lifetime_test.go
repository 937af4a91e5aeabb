package repo

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

// bound is how long a cancelled operation may take to return. It is a
// limit for a hang, not a measurement: a held upload returns at once when
// it is cancelled, and never when it is not.
const bound = 20 * time.Second

// holdingRepo opens the repository in dir again through a backend that
// holds the Puts hold accepts (see storagetest.HoldingBackend), announcing
// each on the returned channel. The retry decorator wraps it as in
// production, waiting an hour before a second attempt: a cancelled call
// it retried would hang the test.
func holdingRepo(t *testing.T, dir string, sec Secret, hold func(string) bool, storeFirst bool) (*Repository, <-chan string) {
	t.Helper()
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan string, 16)
	hb := &storagetest.HoldingBackend{Backend: be, Hold: hold, StoreFirst: storeFirst, Held: held}
	r, err := Open(t.Context(), retry.New(hb, retry.Options{InitialDelay: time.Hour}), sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, held
}

func under(prefix string) func(string) bool {
	return func(name string) bool { return strings.HasPrefix(name, prefix) }
}

// objects lists the objects under prefix in dir, through a backend of
// its own.
func objects(t *testing.T, dir, prefix string) []string {
	t.Helper()
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	names, err := listNames(t.Context(), be, prefix)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// waitHeld waits for an upload to be held in flight.
func waitHeld(t *testing.T, held <-chan string) string {
	t.Helper()
	select {
	case name := <-held:
		return name
	case <-time.After(bound):
		t.Fatal("no upload reached the store")
		return ""
	}
}

// returnsWithin runs f and fails the test if it has not returned within
// bound.
func returnsWithin(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatalf("%s did not return within %v", what, bound)
	}
}

// handOverPack saves incompressible blobs through a sink until a pack
// goes to the uploaders. The repository's packs must be small.
func handOverPack(t *testing.T, w *Writer) {
	t.Helper()
	ctx := t.Context()
	sink := w.NewSink()
	for range (2*w.r.cfg.PackSize)/DefaultBlockSize + 1 {
		data := make([]byte, DefaultBlockSize)
		rand.Read(data)
		if _, _, err := sink.Save(ctx, DataBlob, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWriterAbortCancelsUploads: Abort cuts an upload in flight short
// and returns; the pack is not stored and nothing is indexed.
func TestWriterAbortCancelsUploads(t *testing.T) {
	_, dir, sec := newTestRepo(t)
	r, held := holdingRepo(t, dir, sec, under("data/"), false)
	r.cfg.PackSize = 64 << 10
	w := r.NewWriterContext(t.Context(), nil)
	handOverPack(t, w)
	waitHeld(t, held)
	returnsWithin(t, "Abort with an upload in flight", w.Abort)
	if err := w.Finish(t.Context()); err == nil {
		t.Error("Finish after Abort succeeded")
	}
	w.Abort() // again: harmless
	for _, prefix := range []string{"data/", "index/"} {
		if names := objects(t, dir, prefix); len(names) != 0 {
			t.Errorf("an aborted writer left %q", names)
		}
	}
}

// TestWriterStopsWithItsContext: the uploads of a writer run under the
// context it was started with; once that ends, Finish fails at once
// rather than wait for them.
func TestWriterStopsWithItsContext(t *testing.T) {
	_, dir, sec := newTestRepo(t)
	r, held := holdingRepo(t, dir, sec, under("data/"), false)
	r.cfg.PackSize = 64 << 10
	ctx, cancel := context.WithCancel(t.Context())
	w := r.NewWriterContext(ctx, nil)
	defer w.Abort()
	handOverPack(t, w)
	waitHeld(t, held)
	cancel()
	var err error
	returnsWithin(t, "Finish of a cancelled writer", func() { err = w.Finish(t.Context()) })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Finish = %v, want context.Canceled", err)
	}
	if names := objects(t, dir, "index/"); len(names) != 0 {
		t.Errorf("a cancelled writer stored index objects %q", names)
	}
}

// TestFinishContextCancelsUploads: a writer started without a context
// still stops when the context of the Finish waiting for it ends.
func TestFinishContextCancelsUploads(t *testing.T) {
	_, dir, sec := newTestRepo(t)
	r, held := holdingRepo(t, dir, sec, under("data/"), false)
	w := r.NewWriter(nil)
	defer w.Abort()
	// One frame, far from a full pack: Finish hands it over.
	sink := w.NewSink()
	if _, _, err := sink.Save(t.Context(), DataBlob, []byte("the last pack")); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Finish(ctx) }()
	waitHeld(t, held)
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Finish = %v, want context.Canceled", err)
		}
	case <-time.After(bound):
		t.Fatalf("Finish did not return within %v of its context's end", bound)
	}
	if names := objects(t, dir, "index/"); len(names) != 0 {
		t.Errorf("a cancelled Finish stored index objects %q", names)
	}
}

// TestUnlockAfterCancel: a lock whose holder's context ended is no longer
// refreshed, says so, and is still released by Unlock.
func TestUnlockAfterCancel(t *testing.T) {
	r, dir, _ := newTestRepo(t)
	ctx, cancel := context.WithCancel(t.Context())
	l, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-l.done // the refresher stops with the context
	if err := l.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after the holder's context ended = %v, want context.Canceled", err)
	}
	if err := l.Check(t.Context()); err == nil {
		t.Error("Check passed for a lock no longer refreshed")
	}
	l.Unlock()
	l.Unlock() // again: harmless
	if names := objects(t, dir, "locks/"); len(names) != 0 {
		t.Errorf("locks left after Unlock: %q", names)
	}
	l2, err := r.Lock(t.Context(), "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatalf("lock after a cancelled holder's Unlock: %v", err)
	}
	l2.Unlock()
}

// TestCutOffLockWritesLeaveNoLock: a lock object whose Put was cut off
// after the store kept it (the answer lost) is removed all the same, both
// when the lock is taken and when it is refreshed.
func TestCutOffLockWritesLeaveNoLock(t *testing.T) {
	_, dir, sec := newTestRepo(t)
	var holding atomic.Bool
	r, held := holdingRepo(t, dir, sec, func(name string) bool {
		return holding.Load() && strings.HasPrefix(name, "locks/")
	}, true)

	holding.Store(true)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		l, err := r.Lock(ctx, "asset/db", "backup", true, 0)
		if err == nil {
			l.Unlock()
		}
		errc <- err
	}()
	waitHeld(t, held)
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a lock whose write was cut off was taken")
		}
	case <-time.After(bound):
		t.Fatalf("Lock did not return within %v of its context's end", bound)
	}
	if names := objects(t, dir, "locks/"); len(names) != 0 {
		t.Errorf("a cut-off Lock left %q", names)
	}

	holding.Store(false)
	l, err := r.Lock(t.Context(), "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	holding.Store(true)
	rctx, rcancel := context.WithCancel(t.Context())
	go func() { errc <- l.refresh(rctx) }()
	waitHeld(t, held)
	rcancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("a cut-off refresh succeeded")
		}
	case <-time.After(bound):
		t.Fatalf("refresh did not return within %v of its context's end", bound)
	}
	holding.Store(false)
	if names := objects(t, dir, "locks/"); len(names) != 2 {
		t.Fatalf("locks after the cut-off refresh: %q, want the lock and the one the refresh stored", names)
	}
	l.Unlock()
	if names := objects(t, dir, "locks/"); len(names) != 0 {
		t.Errorf("locks left after Unlock: %q", names)
	}
}

// TestCloseEndsWritersAndLocks: Close aborts a writer with an upload in
// flight, releases a lock still held and closes the backend; what was
// open fails cleanly afterwards, and closing twice is harmless.
func TestCloseEndsWritersAndLocks(t *testing.T) {
	_, dir, sec := newTestRepo(t)
	r, held := holdingRepo(t, dir, sec, under("data/"), false)
	r.cfg.PackSize = 64 << 10
	ctx := t.Context()
	l, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := r.NewWriterContext(ctx, nil)
	handOverPack(t, w)
	waitHeld(t, held)
	var closeErr error
	returnsWithin(t, "Close with an upload in flight", func() { closeErr = r.Close() })
	if closeErr != nil {
		t.Fatalf("close: %v", closeErr)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	for _, prefix := range []string{"locks/", "data/", "index/"} {
		if names := objects(t, dir, prefix); len(names) != 0 {
			t.Errorf("left after Close: %q", names)
		}
	}
	if err := w.Finish(ctx); err == nil {
		t.Error("Finish after Close succeeded")
	}
	w.Abort()
	l.Unlock()
	if _, err := r.Snapshots(ctx, ""); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Snapshots after Close: %v, want ErrClosed", err)
	}
	if _, err := r.Lock(ctx, "asset/db", "backup", true, 0); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Lock after Close: %v, want ErrClosed", err)
	}
	if err := r.NewWriter(nil).Finish(ctx); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("a writer started after Close finished with %v, want ErrClosed", err)
	}
}
