package fs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// crashChildEnv, when set, turns the test binary into the writer that
// TestCrashMidPut kills: it holds the repository root to write into.
const crashChildEnv = "LIFEBOAT_FS_CRASH_CHILD_ROOT"

const (
	crashName      = "data/ab/big"
	crashWritten   = 4 << 20 // bytes the child writes before it stalls
	crashTotalSize = 64 << 20
)

func TestMain(m *testing.M) {
	if root := os.Getenv(crashChildEnv); root != "" {
		crashChild(root)
		return
	}
	os.Exit(m.Run())
}

// crashChild starts a Put that writes crashWritten bytes and then stalls
// forever, waiting for the parent's SIGKILL.
func crashChild(root string) {
	be, err := fs.New(root)
	if err == nil {
		body := &stallingReader{left: crashWritten}
		err = be.Put(context.Background(), crashName, body, crashTotalSize)
	}
	fmt.Fprintf(os.Stderr, "crash child: put returned (%v) instead of stalling\n", err)
	os.Exit(3)
}

// stallingReader serves left zero bytes, then blocks until killed.
type stallingReader struct{ left int }

func (s *stallingReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		// Sleep rather than select{}: with every goroutine blocked the
		// runtime would abort the child as deadlocked before the kill.
		time.Sleep(time.Hour)
		return 0, errors.New("stalling reader woke up")
	}
	n := min(len(p), s.left)
	clear(p[:n])
	s.left -= n
	return n, nil
}

func (s *stallingReader) Seek(int64, int) (int64, error) { return 0, nil }

func newBackend(t testing.TB) (storage.Backend, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "repo")
	if err := fs.Create(root); err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	return be, root
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		be, _ := newBackend(t)
		return be
	})
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		root, want string
	}{
		{filepath.Join(dir, "missing"), "repository directory " + filepath.Join(dir, "missing") + " does not exist"},
		{file, "repository path " + file + " is not a directory"},
	} {
		_, err := fs.New(tc.root)
		if err == nil || err.Error() != tc.want {
			t.Errorf("New(%s): err = %v, want %q", tc.root, err, tc.want)
		}
		if !storage.IsPermanent(err) {
			t.Errorf("New(%s): error not permanent", tc.root)
		}
	}
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := be.Location(), "file://"+filepath.ToSlash(dir); got != want {
		t.Errorf("Location() = %q, want %q", got, want)
	}
}

func TestCreateAndModes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b", "repo")
	if err := fs.Create(root); err != nil {
		t.Fatal(err)
	}
	if err := fs.Create(root); err != nil {
		t.Fatalf("create existing: %v", err)
	}
	be, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Put(t.Context(), "data/ab/obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		mode iofs.FileMode
	}{
		{root, 0o700 | iofs.ModeDir},
		{filepath.Join(root, "data"), 0o700 | iofs.ModeDir},
		{filepath.Join(root, "data", "ab"), 0o700 | iofs.ModeDir},
		{filepath.Join(root, "data", "ab", "obj"), 0o600},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s: mode %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}
	// No temporary file is left after a successful put.
	if got := dirNames(t, filepath.Join(root, "data", "ab")); !slices.Equal(got, []string{"obj"}) {
		t.Errorf("object directory holds %q, want only obj", got)
	}
}

func TestInvalidNamesStayInsideRoot(t *testing.T) {
	be, root := newBackend(t)
	for _, name := range storagetest.InvalidNames {
		_ = be.Put(t.Context(), name, strings.NewReader("x"), 1)
	}
	if got := dirNames(t, filepath.Dir(root)); !slices.Equal(got, []string{"repo"}) {
		t.Errorf("parent of root holds %q after invalid puts, want only repo", got)
	}
	if got := dirNames(t, root); len(got) != 0 {
		t.Errorf("root holds %q after invalid puts", got)
	}
}

func TestListSkipsNonObjects(t *testing.T) {
	be, root := newBackend(t)
	ctx := t.Context()
	if err := be.Put(ctx, "data/ab/obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/ab/.tmp-123", ".tmp-9", "data/README copy.txt", "data/.DS_Store"} {
		if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(p)), []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("ab/obj", filepath.Join(root, "data", "link")); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", "data/", "data/ab/", "data/ab/.tmp", "../", "data//"} {
		var got []string
		if err := be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			got = append(got, oi.Name)
			return nil
		}); err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		want := []string{"data/ab/obj"}
		if !strings.HasPrefix("data/ab/obj", prefix) {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Errorf("list %q = %q, want %q", prefix, got, want)
		}
	}
}

func TestNameHeldByDirectory(t *testing.T) {
	be, root := newBackend(t)
	ctx := t.Context()
	if err := be.Put(ctx, "data/ab/obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	err := be.Put(ctx, "data/ab", strings.NewReader("y"), 1)
	if err == nil || errors.Is(err, storage.ErrExists) || !storage.IsPermanent(err) {
		t.Errorf("put over a directory: err = %v, want a permanent error other than ErrExists", err)
	}
	if err := be.Delete(ctx, "data/ab"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("delete of a directory: err = %v, want ErrNotFound", err)
	}
	// Neither call may disturb the directory or the object inside it.
	if data, err := os.ReadFile(filepath.Join(root, "data", "ab", "obj")); err != nil || string(data) != "x" {
		t.Errorf("object under the directory: %q, %v", data, err)
	}
	// A file where a directory must go fails the put, without ErrExists.
	err = be.Put(ctx, "data/ab/obj/sub", strings.NewReader("z"), 1)
	if err == nil || errors.Is(err, storage.ErrExists) || !storage.IsPermanent(err) {
		t.Errorf("put below a file: err = %v, want a permanent error other than ErrExists", err)
	}
}

func TestPutLongBody(t *testing.T) {
	be, root := newBackend(t)
	if err := be.Put(t.Context(), "data/long", strings.NewReader("0123456789"), 5); err == nil {
		t.Fatal("put of a body longer than its size succeeded")
	}
	if _, err := be.Stat(t.Context(), "data/long"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat after failed put: err = %v", err)
	}
	if got := dirNames(t, filepath.Join(root, "data")); len(got) != 0 {
		t.Errorf("failed put left %q behind", got)
	}
}

// A directory removed behind the backend's back (an operator cleaning up)
// must not break later puts into it, although the backend remembers having
// created it.
func TestPutAfterDirectoryRemoved(t *testing.T) {
	be, root := newBackend(t)
	ctx := t.Context()
	if err := be.Put(ctx, "data/ab/one", strings.NewReader("1"), 1); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(root, "data")); err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "data/ab/two", strings.NewReader("2"), 1); err != nil {
		t.Fatalf("put after directory removed: %v", err)
	}
}

func TestCleanTemp(t *testing.T) {
	be, root := newBackend(t)
	ctx := t.Context()
	if err := be.Put(ctx, "data/ab/obj", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := filepath.Join(root, "data", "ab", ".tmp-old")
	fresh := filepath.Join(root, "data", ".tmp-fresh")
	for _, p := range []string{old, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(old, now.Add(-2*time.Hour), now.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := fs.CleanTemp(ctx, root, now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("CleanTemp = %d, %v; want 1, nil", n, err)
	}
	for p, want := range map[string]bool{old: false, fresh: true, filepath.Join(root, "data", "ab", "obj"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", p, err == nil, want)
		}
	}
}

// TestCrashMidPut kills a writer mid-Put with SIGKILL, which no deferred
// cleanup survives, and checks that the repository shows no object: only a
// temporary file, which List ignores and CleanTemp removes.
func TestCrashMidPut(t *testing.T) {
	_, root := newBackend(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Wait until the child has written all it will write and stalled.
	objDir := filepath.Join(root, "data", "ab")
	deadline := time.After(30 * time.Second)
	var temp string
	for temp == "" {
		select {
		case err := <-exited:
			t.Fatalf("crash child exited early: %v\n%s", err, stderr.Bytes())
		case <-deadline:
			_ = cmd.Process.Kill()
			t.Fatalf("crash child wrote no %d-byte temporary file in 30s", crashWritten)
		case <-time.After(10 * time.Millisecond):
		}
		entries, _ := os.ReadDir(objDir)
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && fi.Size() == crashWritten {
				temp = filepath.Join(objDir, e.Name())
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = <-exited
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("crash child: %v, want death by SIGKILL\n%s", err, stderr.Bytes())
	}

	be, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := be.Stat(ctx, crashName); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat after crash: err = %v, want ErrNotFound", err)
	}
	if got := dirNames(t, objDir); !slices.Equal(got, []string{filepath.Base(temp)}) {
		t.Errorf("object directory after crash holds %q, want only the temporary file", got)
	}
	var listed []string
	if err := be.List(ctx, "", func(oi storage.ObjectInfo) error {
		listed = append(listed, oi.Name)
		return nil
	}); err != nil || len(listed) != 0 {
		t.Errorf("list after crash = %q, %v; want nothing", listed, err)
	}
	// The name is free: a new writer succeeds, and the leftover goes.
	data := bytes.Repeat([]byte("z"), 1000)
	if err := be.Put(ctx, crashName, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("put after crash: %v", err)
	}
	if n, err := fs.CleanTemp(ctx, root, time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("CleanTemp after crash = %d, %v; want 1, nil", n, err)
	}
	rc, err := be.Get(ctx, crashName)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data) {
		t.Errorf("get after crash and re-put: %d bytes, %v", len(got), err)
	}
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestAnotherUsersDirectory: a repository directory another user owns is
// read-only to this process, with a message that says whom to run as; as
// root with AsOwner, what is written is given to that user.
func TestAnotherUsersDirectory(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "fs", "writing on another user's behalf needs root")
	}
	const uid, gid = 65534, 65534 // nobody
	root := filepath.Join(t.TempDir(), "repo")
	if err := fs.Create(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(root, uid, gid); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	be, err := fs.New(root)
	if err != nil {
		t.Fatal(err)
	}
	err = be.Put(ctx, "locks/a", bytes.NewReader([]byte("x")), 1)
	if !errors.Is(err, storage.ErrPermission) || !storage.IsPermanent(err) || !strings.Contains(err.Error(), "run as ") ||
		!strings.Contains(err.Error(), "--as-owner") {
		t.Fatalf("put into another user's directory: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("a refused put left %v", entries)
	}
	if err := be.Delete(ctx, "locks/a"); !errors.Is(err, storage.ErrPermission) {
		t.Fatalf("delete in another user's directory: %v", err)
	}

	be, err = fs.Open(root, fs.Options{AsOwner: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Put(ctx, "data/ab/obj", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data", "data/ab", "data/ab/obj"} {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
			t.Errorf("%s belongs to %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
		}
	}
}
