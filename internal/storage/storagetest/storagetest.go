// Package storagetest is the conformance suite for storage.Backend. Every
// backend (and every decorator, wrapped around a real backend) runs it, so
// that the repository can rely on the contract written in package storage
// rather than on any one backend's habits.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Run runs the conformance suite. newBackend must return a fresh, empty
// backend for each subtest; Run closes it when the subtest ends.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, be storage.Backend)
	}{
		{"RoundTrip", testRoundTrip},
		{"ValidNames", testValidNames},
		{"PutExisting", testPutExisting},
		{"Missing", testMissing},
		{"GetRange", testGetRange},
		{"GetRangeOutOfBounds", testGetRangeOutOfBounds},
		{"List", testList},
		{"ListEmpty", testListEmpty},
		{"ListCallbackError", testListCallbackError},
		{"Delete", testDelete},
		{"ConcurrentPuts", testConcurrentPuts},
		{"ConcurrentPutSameName", testConcurrentPutSameName},
		{"PutFailingBody", testPutFailingBody},
		{"PutShortBody", testPutShortBody},
		{"PutCancelled", testPutCancelled},
		{"PutCancelledMidway", testPutCancelledMidway},
		{"InvalidNames", testInvalidNames},
		{"Stat", testStat},
		{"LargeRoundTrip", testLargeRoundTrip},
		{"LargePutExisting", testLargePutExisting},
		{"LargeConcurrentPutSameName", testLargeConcurrentPutSameName},
		{"LargePutFailingBody", testLargePutFailingBody},
		{"LargePutShortBody", testLargePutShortBody},
		{"LargePutCancelledMidway", testLargePutCancelledMidway},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			be := newBackend(t)
			t.Cleanup(func() {
				if err := be.Close(); err != nil {
					t.Errorf("close %s: %v", be.Location(), err)
				}
			})
			tc.fn(t, be)
		})
	}
}

func testRoundTrip(t *testing.T, be storage.Backend) {
	for _, size := range []int{0, 1, 5 << 20} {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			name := fmt.Sprintf("data/rt/%d", size)
			data := randomBytes(uint64(size), size)
			put(t, be, name, data)
			if got := get(t, be, name); !bytes.Equal(got, data) {
				t.Fatalf("get %s: %d bytes differ from the %d put", name, len(got), len(data))
			}
			if size > 0 {
				if got := getRange(t, be, name, 0, int64(size)); !bytes.Equal(got, data) {
					t.Errorf("get whole range of %s: content differs", name)
				}
			}
			// Read after write: the new object is listed at once.
			if names := listNames(t, be, "data/rt/"); !slices.Contains(names, name) {
				t.Errorf("list data/rt/ = %q, want it to hold %s", names, name)
			}
		})
	}
}

func testValidNames(t *testing.T, be storage.Backend) {
	names := []string{
		"a",
		"config",
		"A-Z_az.09",
		"a..b",
		"x/y/z/w/v",
		"data/ab/" + fmt.Sprintf("%064x", 0xabcdef),
		"keys/a.b.c",
	}
	for _, name := range names {
		put(t, be, name, []byte(name))
		if got := get(t, be, name); string(got) != name {
			t.Errorf("get %s = %q, want %q", name, got, name)
		}
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if got := listNames(t, be, ""); !slices.Equal(got, want) {
		t.Errorf("list = %q, want %q", got, want)
	}
}

func testPutExisting(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	first := []byte("first version")
	put(t, be, "snapshots/x", first)
	for _, second := range [][]byte{[]byte("second, different"), first, {}} {
		err := be.Put(ctx, "snapshots/x", bytes.NewReader(second), int64(len(second)))
		if !errors.Is(err, storage.ErrExists) {
			t.Fatalf("put existing name with %d bytes: err = %v, want ErrExists", len(second), err)
		}
		if !storage.IsPermanent(err) {
			t.Errorf("ErrExists from put is not permanent: %v", err)
		}
	}
	if got := get(t, be, "snapshots/x"); !bytes.Equal(got, first) {
		t.Errorf("content after refused overwrite = %q, want %q", got, first)
	}
}

func testMissing(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	put(t, be, "data/ab/present", []byte("x"))
	for _, name := range []string{"data/ab/absent", "nosuchdir/x", "data", "data/ab"} {
		if rc, err := be.Get(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			closeIf(rc)
			t.Errorf("get %s: err = %v, want ErrNotFound", name, err)
		}
		if rc, err := be.GetRange(ctx, name, 0, 1); !errors.Is(err, storage.ErrNotFound) {
			closeIf(rc)
			t.Errorf("get range of %s: err = %v, want ErrNotFound", name, err)
		}
		if _, err := be.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("stat %s: err = %v, want ErrNotFound", name, err)
		}
		if err := be.Delete(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("delete %s: err = %v, want ErrNotFound", name, err)
		}
	}
	if got := get(t, be, "data/ab/present"); string(got) != "x" {
		t.Errorf("neighbour of missing names damaged: %q", got)
	}
}

func testGetRange(t *testing.T, be storage.Backend) {
	data := randomBytes(7, 1000)
	put(t, be, "data/range", data)
	for _, tc := range []struct{ offset, length int64 }{
		{0, 1000}, {0, 1}, {100, 200}, {500, 1}, {900, 100}, {999, 1},
	} {
		got := getRange(t, be, "data/range", tc.offset, tc.length)
		if want := data[tc.offset : tc.offset+tc.length]; !bytes.Equal(got, want) {
			t.Errorf("range (%d, %d): got %d bytes, want %d, content differs", tc.offset, tc.length, len(got), len(want))
		}
	}
}

func testGetRangeOutOfBounds(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	put(t, be, "data/range", randomBytes(8, 1000))
	for _, tc := range []struct{ offset, length int64 }{
		{950, 100}, {999, 2}, {1000, 1}, {2000, 10}, {-1, 10}, {0, -1},
	} {
		rc, err := be.GetRange(ctx, "data/range", tc.offset, tc.length)
		if err == nil {
			n, _ := io.Copy(io.Discard, rc)
			rc.Close()
			t.Errorf("range (%d, %d) of a 1000-byte object: no error (read %d bytes)", tc.offset, tc.length, n)
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			t.Errorf("range (%d, %d) of an existing object: %v, must not match ErrNotFound", tc.offset, tc.length, err)
		}
	}
}

func testList(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	// "data-x" and "data.y" sort before "data/...": '-' and '.' precede '/',
	// which a naive walk of a directory tree gets wrong.
	objects := map[string]int{
		"config":      10,
		"data/ab/xyz": 3,
		"data/ab/xya": 4,
		"data/ab/x":   5,
		"data/abc":    6,
		"data/cd/1":   7,
		"data-x":      8,
		"data.y":      9,
		"index/1":     11,
		"index/10":    12,
		"index/2":     13,
		"snapshots/x": 14,
	}
	for name, size := range objects {
		put(t, be, name, randomBytes(uint64(size), size))
	}
	all := make([]string, 0, len(objects))
	for name := range objects {
		all = append(all, name)
	}
	slices.Sort(all)

	var infos []storage.ObjectInfo
	if err := be.List(ctx, "", func(oi storage.ObjectInfo) error {
		infos = append(infos, oi)
		return nil
	}); err != nil {
		t.Fatalf("list: %v", err)
	}
	got := make([]string, 0, len(infos))
	for _, oi := range infos {
		got = append(got, oi.Name)
		if want := int64(objects[oi.Name]); oi.Size != want {
			t.Errorf("list: %s has size %d, want %d", oi.Name, oi.Size, want)
		}
		if oi.ModTime.IsZero() {
			t.Errorf("list: %s has no modification time", oi.Name)
		}
	}
	if !slices.Equal(got, all) {
		t.Fatalf("list \"\":\n got %q\nwant %q", got, all)
	}

	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"data/", []string{"data/ab/x", "data/ab/xya", "data/ab/xyz", "data/abc", "data/cd/1"}},
		{"data/ab", []string{"data/ab/x", "data/ab/xya", "data/ab/xyz", "data/abc"}},
		{"data/ab/", []string{"data/ab/x", "data/ab/xya", "data/ab/xyz"}},
		{"data/ab/xy", []string{"data/ab/xya", "data/ab/xyz"}},
		{"data", []string{"data-x", "data.y", "data/ab/x", "data/ab/xya", "data/ab/xyz", "data/abc", "data/cd/1"}},
		{"index/1", []string{"index/1", "index/10"}},
		{"index/", []string{"index/1", "index/10", "index/2"}},
		{"snapshots/x", []string{"snapshots/x"}},
		{"c", []string{"config"}},
		{"nosuch/", nil},
		{"data/zz", nil},
		{"z", nil},
	} {
		if got := listNames(t, be, tc.prefix); !slices.Equal(got, tc.want) {
			t.Errorf("list %q:\n got %q\nwant %q", tc.prefix, got, tc.want)
		}
	}
}

func testListEmpty(t *testing.T, be storage.Backend) {
	for _, prefix := range []string{"", "data/", "data"} {
		if got := listNames(t, be, prefix); len(got) != 0 {
			t.Errorf("list %q of an empty backend = %q", prefix, got)
		}
	}
}

func testListCallbackError(t *testing.T, be storage.Backend) {
	for _, name := range []string{"index/1", "index/2", "index/3"} {
		put(t, be, name, []byte(name))
	}
	stop := errors.New("stop listing")
	calls := 0
	err := be.List(t.Context(), "index/", func(storage.ObjectInfo) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) {
		t.Errorf("list whose callback fails: err = %v, want the callback's error", err)
	}
	if calls != 1 {
		t.Errorf("callback ran %d times after failing, want 1", calls)
	}
}

func testDelete(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	put(t, be, "locks/a", []byte("lock"))
	put(t, be, "locks/b", []byte("other"))
	if err := be.Delete(ctx, "locks/a"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if rc, err := be.Get(ctx, "locks/a"); !errors.Is(err, storage.ErrNotFound) {
		closeIf(rc)
		t.Errorf("get after delete: err = %v, want ErrNotFound", err)
	}
	if _, err := be.Stat(ctx, "locks/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat after delete: err = %v, want ErrNotFound", err)
	}
	if got := listNames(t, be, ""); !slices.Equal(got, []string{"locks/b"}) {
		t.Errorf("list after delete = %q, want [locks/b]", got)
	}
	if err := be.Delete(ctx, "locks/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	// A deleted name is free again.
	put(t, be, "locks/a", []byte("new lock"))
	if got := get(t, be, "locks/a"); string(got) != "new lock" {
		t.Errorf("get after re-put = %q", got)
	}
}

func testConcurrentPuts(t *testing.T, be storage.Backend) {
	const objects, workers = 50, 8
	ctx := t.Context()
	name := func(i int) string { return fmt.Sprintf("data/%02x/obj-%03d", i%7, i) }
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, objects)
	for range workers {
		wg.Go(func() {
			for i := range work {
				data := randomBytes(uint64(i), 1000+i*997)
				if err := be.Put(ctx, name(i), bytes.NewReader(data), int64(len(data))); err != nil {
					errs <- fmt.Errorf("put %s: %w", name(i), err)
				}
			}
		})
	}
	for i := range objects {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var want []string
	for i := range objects {
		want = append(want, name(i))
		if got, data := get(t, be, name(i)), randomBytes(uint64(i), 1000+i*997); !bytes.Equal(got, data) {
			t.Errorf("get %s: content differs", name(i))
		}
	}
	slices.Sort(want)
	if got := listNames(t, be, "data/"); !slices.Equal(got, want) {
		t.Errorf("list after concurrent puts:\n got %q\nwant %q", got, want)
	}
}

func testConcurrentPutSameName(t *testing.T, be storage.Backend) {
	const writers = 8
	ctx := t.Context()
	bodies := make([][]byte, writers)
	for i := range bodies {
		bodies[i] = randomBytes(uint64(100+i), 256<<10)
	}
	results := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			results[i] = be.Put(ctx, "index/same", bytes.NewReader(bodies[i]), int64(len(bodies[i])))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Errorf("writer %d: err = %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	if got := get(t, be, "index/same"); !bytes.Equal(got, bodies[winner]) {
		t.Errorf("stored content is not the winning writer's")
	}
}

func testPutFailingBody(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	data := randomBytes(3, 1<<20)
	body := &failingReader{r: bytes.NewReader(data), left: 300 << 10}
	if err := be.Put(ctx, "data/fail", body, int64(len(data))); err == nil {
		t.Fatal("put with a body that fails mid-way succeeded")
	}
	assertAbsent(t, be, "data/fail")
	put(t, be, "data/fail", data)
	if got := get(t, be, "data/fail"); !bytes.Equal(got, data) {
		t.Error("content after failed then successful put differs")
	}
}

func testPutShortBody(t *testing.T, be storage.Backend) {
	data := randomBytes(4, 1000)
	if err := be.Put(t.Context(), "data/short", bytes.NewReader(data), 2000); err == nil {
		t.Fatal("put of a body shorter than its size succeeded")
	}
	assertAbsent(t, be, "data/short")
}

func testPutCancelled(t *testing.T, be storage.Backend) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	data := randomBytes(5, 1000)
	if err := be.Put(ctx, "data/cancelled", bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatal("put with a cancelled context succeeded")
	}
	assertAbsent(t, be, "data/cancelled")
}

func testPutCancelledMidway(t *testing.T, be storage.Backend) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := randomBytes(6, 5<<20)
	body := &cancellingReader{r: bytes.NewReader(data), left: 1 << 20, cancel: cancel}
	if err := be.Put(ctx, "data/cancelled", body, int64(len(data))); err == nil {
		t.Fatal("put whose context was cancelled mid-way succeeded")
	}
	assertAbsent(t, be, "data/cancelled")
	put(t, be, "data/cancelled", data)
}

// InvalidNames lists names every backend must refuse. Exported so that
// backend-specific tests can check, for example, that nothing was written
// outside a directory backend's root.
var InvalidNames = []string{
	"",
	"/abs",
	"/",
	"a/",
	"a//b",
	"../x",
	"a/../b",
	"..",
	".",
	"a/./b",
	"./a",
	".hidden",
	"a/.tmp-x",
	"with space",
	"back\\slash",
	"tab\tx",
	"nul\x00x",
	"colon:x",
	"star*",
	"caf\u00e9",
	"a/b\n",
}

// testClose: Close may be called twice, and every call after it fails
// with ErrClosed, permanently, whether or not the object exists.
func testClose(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	put(t, be, "data/ab/kept", []byte("kept"))
	loc := be.Location()
	if err := be.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := be.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if got := be.Location(); got != loc {
		t.Errorf("location after close = %q, want %q", got, loc)
	}
	check := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, storage.ErrClosed) || !storage.IsPermanent(err) {
			t.Errorf("%s after close: err = %v, want a permanent ErrClosed", op, err)
		}
	}
	for _, name := range []string{"data/ab/kept", "data/ab/new"} {
		data := []byte("after close")
		check("put "+name, be.Put(ctx, name, bytes.NewReader(data), int64(len(data))))
		rc, err := be.Get(ctx, name)
		closeIf(rc)
		check("get "+name, err)
		rc, err = be.GetRange(ctx, name, 0, 1)
		closeIf(rc)
		check("get range of "+name, err)
		_, err = be.Stat(ctx, name)
		check("stat "+name, err)
		check("delete "+name, be.Delete(ctx, name))
	}
	called := false
	check("list", be.List(ctx, "", func(storage.ObjectInfo) error {
		called = true
		return nil
	}))
	if called {
		t.Error("list after close delivered objects")
	}
}

func testInvalidNames(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	for _, name := range InvalidNames {
		if storage.ValidateName(name) == nil {
			t.Fatalf("storage.ValidateName accepts %q, which the suite expects refused", name)
		}
		err := be.Put(ctx, name, bytes.NewReader([]byte("x")), 1)
		if err == nil || errors.Is(err, storage.ErrExists) {
			t.Errorf("put %q: err = %v, want an invalid-name error", name, err)
		}
		if err != nil && !storage.IsPermanent(err) {
			t.Errorf("put %q: invalid name error is not permanent: %v", name, err)
		}
		if rc, err := be.Get(ctx, name); err == nil {
			rc.Close()
			t.Errorf("get %q: no error", name)
		}
		if rc, err := be.GetRange(ctx, name, 0, 1); err == nil {
			rc.Close()
			t.Errorf("get range of %q: no error", name)
		}
		if _, err := be.Stat(ctx, name); err == nil {
			t.Errorf("stat %q: no error", name)
		}
		if err := be.Delete(ctx, name); err == nil {
			t.Errorf("delete %q: no error", name)
		}
	}
	if got := listNames(t, be, ""); len(got) != 0 {
		t.Errorf("invalid names left objects behind: %q", got)
	}
}

func testStat(t *testing.T, be storage.Backend) {
	for _, size := range []int{0, 1, 4097} {
		name := fmt.Sprintf("index/stat-%d", size)
		put(t, be, name, randomBytes(uint64(size), size))
		oi, err := be.Stat(t.Context(), name)
		if err != nil {
			t.Fatalf("stat %s: %v", name, err)
		}
		if oi.Size != int64(size) {
			t.Errorf("stat %s: size %d, want %d", name, oi.Size, size)
		}
		if oi.Name != name {
			t.Errorf("stat %s: name %q", name, oi.Name)
		}
		if oi.ModTime.IsZero() {
			t.Errorf("stat %s: no modification time", name)
		}
	}
}

// LargeSize is the size of the objects the Large tests put: three parts
// of S3's smallest part size and a short fourth, so that a backend whose
// test sets its multipart threshold and part size low (to 5 MiB) takes
// its multipart path, with parts uploaded in parallel, and one whose
// threshold is the default does not.
const LargeSize = 3*5<<20 + 12345

// Bodies that are not io.ReaderAt take a different path in a backend that
// reads parts in place from those that are: the Large tests put both.
var largeBodies = []struct {
	name string
	wrap func(*bytes.Reader) io.ReadSeeker
}{
	{"ReaderAt", func(r *bytes.Reader) io.ReadSeeker { return r }},
	{"ReadSeeker", func(r *bytes.Reader) io.ReadSeeker { return readSeekerOnly{r} }},
}

// readSeekerOnly hides every method of its reader but Read and Seek.
type readSeekerOnly struct{ r io.ReadSeeker }

func (r readSeekerOnly) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r readSeekerOnly) Seek(offset int64, whence int) (int64, error) {
	return r.r.Seek(offset, whence)
}

func testLargeRoundTrip(t *testing.T, be storage.Backend) {
	for i, body := range largeBodies {
		t.Run(body.name, func(t *testing.T) {
			name := "data/large/" + body.name
			data := randomBytes(uint64(20+i), LargeSize)
			if err := be.Put(t.Context(), name, body.wrap(bytes.NewReader(data)), int64(len(data))); err != nil {
				t.Fatalf("put %s: %v", name, err)
			}
			if got := get(t, be, name); !bytes.Equal(got, data) {
				t.Fatalf("get %s: %d bytes differ from the %d put", name, len(got), len(data))
			}
			oi, err := be.Stat(t.Context(), name)
			if err != nil || oi.Size != LargeSize {
				t.Errorf("stat %s: size %d, err %v; want %d", name, oi.Size, err, LargeSize)
			}
			// Ranges across the 5 MiB boundaries, and the tail.
			for _, r := range []struct{ offset, length int64 }{
				{5<<20 - 10, 20}, {0, 10<<20 + 1}, {LargeSize - 100, 100},
			} {
				if got := getRange(t, be, name, r.offset, r.length); !bytes.Equal(got, data[r.offset:r.offset+r.length]) {
					t.Errorf("range (%d, %d) of %s differs", r.offset, r.length, name)
				}
			}
			if names := listNames(t, be, "data/large/"); !slices.Contains(names, name) {
				t.Errorf("list data/large/ = %q, want it to hold %s", names, name)
			}
		})
	}
}

func testLargePutExisting(t *testing.T, be storage.Backend) {
	ctx := t.Context()
	first := randomBytes(30, LargeSize)
	put(t, be, "data/big", first)
	for _, second := range [][]byte{randomBytes(31, LargeSize), first, []byte("small")} {
		err := be.Put(ctx, "data/big", bytes.NewReader(second), int64(len(second)))
		if !errors.Is(err, storage.ErrExists) || !storage.IsPermanent(err) {
			t.Fatalf("put %d bytes over a large object: err = %v, want a permanent ErrExists", len(second), err)
		}
	}
	// And a large object over a small one.
	put(t, be, "data/small", []byte("small"))
	if err := be.Put(ctx, "data/small", bytes.NewReader(first), int64(len(first))); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("put a large object over a small one: err = %v, want ErrExists", err)
	}
	if got := get(t, be, "data/big"); !bytes.Equal(got, first) {
		t.Error("large object changed by a refused put")
	}
	if got := get(t, be, "data/small"); string(got) != "small" {
		t.Errorf("small object after a refused large put = %d bytes", len(got))
	}
}

func testLargeConcurrentPutSameName(t *testing.T, be storage.Backend) {
	const writers = 3
	bodies := make([][]byte, writers)
	for i := range bodies {
		bodies[i] = randomBytes(uint64(40+i), LargeSize)
	}
	results := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			<-start
			results[i] = be.Put(t.Context(), "index/large", bytes.NewReader(bodies[i]), int64(len(bodies[i])))
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Errorf("writer %d: err = %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	if got := get(t, be, "index/large"); !bytes.Equal(got, bodies[winner]) {
		t.Error("stored content is not the winning writer's")
	}
}

func testLargePutFailingBody(t *testing.T, be storage.Backend) {
	data := randomBytes(50, LargeSize)
	// Past the first part, so that parts are already stored when it fails.
	body := &failingReader{r: bytes.NewReader(data), left: 7 << 20}
	if err := be.Put(t.Context(), "data/fail", body, int64(len(data))); err == nil {
		t.Fatal("put with a body that fails mid-way succeeded")
	}
	assertAbsent(t, be, "data/fail")
	put(t, be, "data/fail", data)
}

func testLargePutShortBody(t *testing.T, be storage.Backend) {
	for i, body := range largeBodies {
		data := randomBytes(uint64(60+i), LargeSize-1000)
		if err := be.Put(t.Context(), "data/short", body.wrap(bytes.NewReader(data)), LargeSize); err == nil {
			t.Fatalf("%s: put of a body shorter than its size succeeded", body.name)
		}
		assertAbsent(t, be, "data/short")
	}
}

func testLargePutCancelledMidway(t *testing.T, be storage.Backend) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	data := randomBytes(70, LargeSize)
	body := &cancellingReader{r: bytes.NewReader(data), left: 6 << 20, cancel: cancel}
	if err := be.Put(ctx, "data/cancelled", body, int64(len(data))); err == nil {
		t.Fatal("put whose context was cancelled mid-way succeeded")
	}
	assertAbsent(t, be, "data/cancelled")
	put(t, be, "data/cancelled", data)
}

// put stores data under name and fails the test on error.
func put(t testing.TB, be storage.Backend, name string, data []byte) {
	t.Helper()
	if err := be.Put(t.Context(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
}

// get reads the whole object and fails the test on error.
func get(t testing.TB, be storage.Backend, name string) []byte {
	t.Helper()
	data, err := storage.ReadAll(t.Context(), be, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return data
}

func getRange(t testing.TB, be storage.Backend, name string, offset, length int64) []byte {
	t.Helper()
	rc, err := be.GetRange(t.Context(), name, offset, length)
	if err != nil {
		t.Fatalf("get range (%d, %d) of %s: %v", offset, length, name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read range (%d, %d) of %s: %v", offset, length, name, err)
	}
	return data
}

func listNames(t testing.TB, be storage.Backend, prefix string) []string {
	t.Helper()
	var names []string
	err := be.List(t.Context(), prefix, func(oi storage.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("list %q: %v", prefix, err)
	}
	return names
}

// assertAbsent checks that name is not stored and that no object at all is
// listed (so neither a partial object nor a leftover under another name).
func assertAbsent(t testing.TB, be storage.Backend, name string) {
	t.Helper()
	if oi, err := be.Stat(t.Context(), name); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat %s after failed put: %+v, err = %v, want ErrNotFound", name, oi, err)
	}
	if got := listNames(t, be, ""); len(got) != 0 {
		t.Errorf("list after failed put = %q, want nothing", got)
	}
}

func closeIf(rc io.ReadCloser) {
	if rc != nil {
		rc.Close()
	}
}

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	data := make([]byte, n)
	_, _ = rand.NewChaCha8(s).Read(data)
	return data
}

// failingReader fails every read once left bytes have been delivered in
// total, seeks included, like a source file whose disk dies mid-backup.
type failingReader struct {
	r    *bytes.Reader
	left int
}

var errBodyFailed = errors.New("body read failed (injected)")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.left <= 0 {
		return 0, errBodyFailed
	}
	if len(p) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= n
	return n, err
}

func (f *failingReader) Seek(offset int64, whence int) (int64, error) {
	return f.r.Seek(offset, whence)
}

// cancellingReader cancels the Put's context once left bytes have been read,
// and goes on serving data so that only the context can stop the Put.
type cancellingReader struct {
	r      *bytes.Reader
	left   int
	cancel context.CancelFunc
}

func (c *cancellingReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		c.cancel()
	}
	if c.left > 0 && len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

func (c *cancellingReader) Seek(offset int64, whence int) (int64, error) {
	return c.r.Seek(offset, whence)
}
