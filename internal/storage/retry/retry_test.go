package retry_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

var errTransient = errors.New("connection reset (injected)")

// faulty wraps a real backend and injects failures, as a flaky network or
// disk would.
type faulty struct {
	storage.Backend

	// before, if set, may fail a call before it reaches the backend; call
	// counts each operation's calls from 1.
	before func(op string, call int) error
	// after, if set, may replace the result of a call that reached the
	// backend: a lost acknowledgement.
	after func(op string, call int, err error) error
	// failOncePerName fails the first call of each operation on each name
	// (or list prefix) transiently.
	failOncePerName bool
	// listFailAfter, if set, makes the List call with that number fail
	// transiently after delivering that many objects.
	listFailAfter map[int]int

	mu    sync.Mutex
	calls map[string]int
}

func (f *faulty) enter(op, name string) (int, error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	f.calls[op+" "+name]++
	n, nameCalls := f.calls[op], f.calls[op+" "+name]
	f.mu.Unlock()
	if f.failOncePerName && nameCalls == 1 {
		return n, errTransient
	}
	if f.before != nil {
		return n, f.before(op, n)
	}
	return n, nil
}

func (f *faulty) leave(op string, call int, err error) error {
	if f.after != nil {
		return f.after(op, call, err)
	}
	return err
}

func (f *faulty) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *faulty) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	n, err := f.enter("put", name)
	if err != nil {
		// Fail part-way through the upload, so that a retry that does not
		// rewind the body sends only its tail.
		_, _ = io.CopyN(io.Discard, body, size/2)
		return err
	}
	return f.leave("put", n, f.Backend.Put(ctx, name, body, size))
}

func (f *faulty) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	n, err := f.enter("get", name)
	if err != nil {
		return nil, err
	}
	rc, err := f.Backend.Get(ctx, name)
	return rc, f.leave("get", n, err)
}

func (f *faulty) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	n, err := f.enter("getrange", name)
	if err != nil {
		return nil, err
	}
	rc, err := f.Backend.GetRange(ctx, name, offset, length)
	return rc, f.leave("getrange", n, err)
}

func (f *faulty) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	n, err := f.enter("stat", name)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	oi, err := f.Backend.Stat(ctx, name)
	return oi, f.leave("stat", n, err)
}

func (f *faulty) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	n, err := f.enter("list", prefix)
	if err != nil {
		return err
	}
	limit, cut := f.listFailAfter[n]
	delivered := 0
	err = f.Backend.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		if cut && delivered == limit {
			return errTransient
		}
		delivered++
		return fn(oi)
	})
	return f.leave("list", n, err)
}

func (f *faulty) Delete(ctx context.Context, name string) error {
	n, err := f.enter("delete", name)
	if err != nil {
		return err
	}
	return f.leave("delete", n, f.Backend.Delete(ctx, name))
}

// failFirst fails the first n calls of every operation with err.
func failFirst(n int, err error) func(string, int) error {
	return func(_ string, call int) error {
		if call <= n {
			return err
		}
		return nil
	}
}

func fastOptions() retry.Options {
	return retry.Options{MaxAttempts: 4, InitialDelay: time.Millisecond, MaxDelay: 4 * time.Millisecond}
}

func newFS(t testing.TB) storage.Backend {
	t.Helper()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return retry.New(newFS(t), fastOptions())
	})
}

// TestConformanceFlaky runs the suite through a backend on which the first
// call of every operation on every name fails transiently: the decorator
// must hide that completely.
func TestConformanceFlaky(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		f := &faulty{Backend: newFS(t), failOncePerName: true}
		return retry.New(f, fastOptions())
	})
}

// ops calls each Backend operation once on an object that exists.
var ops = []struct {
	name string
	call func(ctx context.Context, be storage.Backend) error
}{
	{"put", func(ctx context.Context, be storage.Backend) error {
		return be.Put(ctx, "data/new", strings.NewReader("new object"), 10)
	}},
	{"get", func(ctx context.Context, be storage.Backend) error {
		rc, err := be.Get(ctx, "data/obj")
		if err == nil {
			rc.Close()
		}
		return err
	}},
	{"getrange", func(ctx context.Context, be storage.Backend) error {
		rc, err := be.GetRange(ctx, "data/obj", 1, 2)
		if err == nil {
			rc.Close()
		}
		return err
	}},
	{"stat", func(ctx context.Context, be storage.Backend) error {
		_, err := be.Stat(ctx, "data/obj")
		return err
	}},
	{"list", func(ctx context.Context, be storage.Backend) error {
		return be.List(ctx, "", func(storage.ObjectInfo) error { return nil })
	}},
	{"delete", func(ctx context.Context, be storage.Backend) error {
		return be.Delete(ctx, "data/obj")
	}},
}

// seeded returns a fresh filesystem backend holding data/obj.
func seeded(t testing.TB) storage.Backend {
	t.Helper()
	be := newFS(t)
	if err := be.Put(t.Context(), "data/obj", strings.NewReader("object"), 6); err != nil {
		t.Fatal(err)
	}
	return be
}

func TestRetriesTransientErrors(t *testing.T) {
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			f := &faulty{Backend: seeded(t), before: failFirst(3, errTransient)}
			if err := op.call(t.Context(), retry.New(f, fastOptions())); err != nil {
				t.Fatalf("%s after 3 transient failures: %v", op.name, err)
			}
			if got := f.count(op.name); got != 4 {
				t.Errorf("%s reached the backend %d times, want 4", op.name, got)
			}
		})
	}
}

func TestGivesUp(t *testing.T) {
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			f := &faulty{Backend: seeded(t), before: failFirst(100, errTransient)}
			err := op.call(t.Context(), retry.New(f, fastOptions()))
			if !errors.Is(err, errTransient) {
				t.Fatalf("%s: err = %v, want the last transient error", op.name, err)
			}
			if !strings.Contains(err.Error(), "after 4 attempts") {
				t.Errorf("%s: error %q does not give the attempt count", op.name, err)
			}
			if got := f.count(op.name); got != 4 {
				t.Errorf("%s reached the backend %d times, want MaxAttempts = 4", op.name, got)
			}
		})
	}
}

func TestPermanentErrorsNotRetried(t *testing.T) {
	permanent := storage.Permanent(errors.New("access denied (injected)"))
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			f := &faulty{Backend: seeded(t), before: failFirst(100, permanent)}
			err := op.call(t.Context(), retry.New(f, fastOptions()))
			if !errors.Is(err, permanent) {
				t.Errorf("%s: err = %v, want the permanent error", op.name, err)
			}
			if got := f.count(op.name); got != 1 {
				t.Errorf("%s reached the backend %d times, want 1", op.name, got)
			}
		})
	}
	// The backend's own not-found and exists answers are permanent too.
	f := &faulty{Backend: seeded(t)}
	be := retry.New(f, fastOptions())
	if _, err := be.Stat(t.Context(), "data/missing"); !errors.Is(err, storage.ErrNotFound) || f.count("stat") != 1 {
		t.Errorf("stat missing: err = %v after %d calls, want ErrNotFound after 1", err, f.count("stat"))
	}
	if err := be.Put(t.Context(), "data/obj", strings.NewReader("x"), 1); !errors.Is(err, storage.ErrExists) || f.count("put") != 1 {
		t.Errorf("put existing: err = %v after %d calls, want ErrExists after 1", err, f.count("put"))
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := &faulty{Backend: seeded(t), before: func(string, int) error {
		cancel() // the operator presses ^C while the first attempt fails
		return errTransient
	}}
	be := retry.New(f, retry.Options{InitialDelay: time.Hour, MaxDelay: time.Hour})
	start := time.Now()
	_, err := be.Stat(ctx, "data/obj")
	if !errors.Is(err, context.Canceled) && !errors.Is(err, errTransient) {
		t.Errorf("err = %v, want cancellation or the transient error", err)
	}
	if f.count("stat") != 1 {
		t.Errorf("backend called %d times after cancel, want 1", f.count("stat"))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled call took %v", d)
	}
}

func TestContextCancelDuringBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	f := &faulty{Backend: seeded(t), before: failFirst(100, errTransient)}
	be := retry.New(f, retry.Options{InitialDelay: time.Hour, MaxDelay: time.Hour})
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := be.Stat(ctx, "data/obj")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), errTransient.Error()) {
		t.Errorf("err = %v, want it to name the last failure", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel during an hour's backoff took %v", d)
	}
}

// TestClosedIsNotRetried: Close reaches the wrapped backend, and the
// ErrClosed every later call meets is not worth a second attempt.
func TestClosedIsNotRetried(t *testing.T) {
	f := &faulty{Backend: seeded(t)}
	be := retry.New(f, retry.Options{InitialDelay: time.Hour, MaxDelay: time.Hour})
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if err := op.call(t.Context(), be); !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after close: err = %v, want ErrClosed", op.name, err)
		}
		if n := f.count(op.name); n != 1 {
			t.Errorf("%s after close: %d attempts, want 1", op.name, n)
		}
	}
}

func TestPutRewindsBody(t *testing.T) {
	f := &faulty{Backend: newFS(t), before: failFirst(2, errTransient)}
	be := retry.New(f, fastOptions())
	data := bytes.Repeat([]byte("0123456789abcdef"), 64<<10)
	if err := be.Put(t.Context(), "data/big", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	got, err := storage.ReadAll(t.Context(), be, "data/big")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("stored %d bytes after retries, want the complete %d", len(got), len(data))
	}
}

// An upload that succeeded but whose acknowledgement was lost comes back as
// ErrExists on the retry; the caller must be told, and told why.
func TestPutExistsAfterLostAck(t *testing.T) {
	f := &faulty{Backend: newFS(t), after: func(op string, call int, err error) error {
		if op == "put" && call == 1 && err == nil {
			return errTransient
		}
		return err
	}}
	be := retry.New(f, fastOptions())
	err := be.Put(t.Context(), "data/x", strings.NewReader("abc"), 3)
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("err = %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), "earlier of 2 attempts may have stored it") {
		t.Errorf("err = %q, want it to say an earlier attempt may have stored the object", err)
	}
}

func TestDeleteNotFoundAfterLostAck(t *testing.T) {
	f := &faulty{Backend: seeded(t), after: func(op string, call int, err error) error {
		if op == "delete" && call == 1 && err == nil {
			return errTransient
		}
		return err
	}}
	be := retry.New(f, fastOptions())
	err := be.Delete(t.Context(), "data/obj")
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("delete whose first ack was lost: err = %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "earlier of 2 attempts may have removed it") {
		t.Errorf("err = %q, want it to say an earlier attempt may have removed the object", err)
	}
	if _, err := be.Stat(t.Context(), "data/obj"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat after delete: err = %v, want ErrNotFound", err)
	}
}

func TestListResumesWithoutDuplicates(t *testing.T) {
	inner := newFS(t)
	want := []string{"a/1", "a/2", "b/1", "b/2", "c"}
	for _, name := range want {
		if err := inner.Put(t.Context(), name, strings.NewReader(name), int64(len(name))); err != nil {
			t.Fatal(err)
		}
	}
	// The first listing breaks after two objects, the second after three.
	f := &faulty{Backend: inner, listFailAfter: map[int]int{1: 2, 2: 3}}
	var got []string
	err := retry.New(f, fastOptions()).List(t.Context(), "", func(oi storage.ObjectInfo) error {
		got = append(got, oi.Name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("listed %q, want %q", got, want)
	}
	if f.count("list") != 3 {
		t.Errorf("listing ran %d times, want 3", f.count("list"))
	}
}

func TestListCallbackErrorNotRetried(t *testing.T) {
	f := &faulty{Backend: seeded(t)}
	stop := errors.New("caller stops")
	err := retry.New(f, fastOptions()).List(t.Context(), "", func(storage.ObjectInfo) error { return stop })
	if err != stop {
		t.Errorf("err = %v, want the callback's error itself", err)
	}
	if f.count("list") != 1 {
		t.Errorf("listing ran %d times, want 1", f.count("list"))
	}
}

func TestRetriesAreLogged(t *testing.T) {
	var buf bytes.Buffer
	opts := fastOptions()
	opts.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	f := &faulty{Backend: seeded(t), before: failFirst(2, errTransient)}
	if _, err := retry.New(f, opts).Stat(t.Context(), "data/obj"); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"level=WARN", "op=stat", "name=data/obj", "attempt=1", "attempt=2", errTransient.Error()} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 2 {
		t.Errorf("logged %d lines for 2 retries:\n%s", n, out)
	}
}
