package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// newTestRepo creates a repository in a temp dir and returns it open, with
// the directory so tests can damage files.
func newTestRepo(t testing.TB) (*Repository, string, Secret) {
	t.Helper()
	return newTestRepoWith(t, InitOptions{})
}

func newTestRepoWith(t testing.TB, opts InitOptions) (*Repository, string, Secret) {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(t.TempDir(), "repo.key")
	if err := GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := Init(ctx, be, sec, opts); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir, sec
}

// compressible makes data that compresses but is not trivially repetitive.
func compressible(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = "lifeboat backs up postgres "[i%27] + seed*byte(i/4096%3)
	}
	return b
}

// backupFiles stores files (path → content) as a snapshot of asset a.
func backupFiles(t testing.TB, r *Repository, asset string, files map[string][]byte) *Snapshot {
	t.Helper()
	known, err := r.LoadIndex(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := writeFiles(t, r, known, asset, files)
	if err := r.SaveSnapshot(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFiles stores files and returns the snapshot that would record
// them, not yet saved.
func writeFiles(t testing.TB, r *Repository, known *Index, asset string, files map[string][]byte) *Snapshot {
	t.Helper()
	return writeFilesAfter(t, r, known, asset, files, nil)
}

// writeFilesAfter is writeFiles for a backup whose parent is parent (nil
// for none): each file is added after its node in the parent's tree.
func writeFilesAfter(t testing.TB, r *Repository, known *Index, asset string, files map[string][]byte, parent *Snapshot) *Snapshot {
	t.Helper()
	ctx := context.Background()
	prev := map[string]*Node{}
	if parent != nil {
		if err := r.WalkTree(ctx, known, parent.Tree, func(n *Node) error {
			prev[n.Path] = n
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	w := r.NewWriter(known)
	sink := w.NewSink()
	tw := w.NewTreeWriter()
	var paths []string
	for p := range files {
		paths = append(paths, p)
	}
	sortStrings(paths)
	if err := tw.Add(ctx, &Node{Path: "dir", Type: NodeDir, Mode: 0o700, MTime: time.Unix(1700000000, 0).UnixNano()}); err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		data := files[p]
		n := &Node{Path: "dir/" + p, Type: NodeFile, Mode: 0o600, Size: int64(len(data)), MTime: time.Unix(1700000000, 0).UnixNano()}
		bs := r.Config().BlockSize
		for off := 0; off < len(data); off += bs {
			end := min(off+bs, len(data))
			id, _, err := sink.Save(ctx, DataBlob, data[off:end])
			if err != nil {
				t.Fatal(err)
			}
			n.Blocks = append(n.Blocks, Block{ID: id, Len: uint32(end - off)})
		}
		if err := tw.AddAfter(ctx, n, prev[n.Path]); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tree, count, err := tw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	return &Snapshot{Asset: asset, Kind: "files", Type: "full", Tree: tree, Nodes: count, StartTime: time.Now(), EndTime: time.Now(),
		Stats: SnapshotStats{BytesNew: st.BytesNew, BlobsNew: st.BlobsNew}}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func restoreTo(t testing.TB, r *Repository, s *Snapshot, delta bool, dir string) (RestoreStats, error) {
	t.Helper()
	ctx := context.Background()
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return RestoreStats{}, err
	}
	return r.RestoreTree(ctx, idx, s.Tree, RestoreOptions{Dir: dir, UID: -1, GID: -1, Delta: delta})
}

func TestRoundTripAndDedup(t *testing.T) {
	r, _, _ := newTestRepo(t)
	random := make([]byte, 3<<20+123)
	rand.Read(random)
	files := map[string][]byte{
		"random":       random,
		"text":         compressible(5<<20, 1),
		"empty":        nil,
		"zeros":        make([]byte, 1<<20),
		"small":        []byte("hello"),
		"sub/deep/one": compressible(100000, 2),
	}
	s1 := backupFiles(t, r, "a", files)
	if s1.Stats.BytesNew == 0 {
		t.Fatal("first backup stored nothing")
	}
	// The same content again stores no new blob.
	s2 := backupFiles(t, r, "a", files)
	if s2.Stats.BlobsNew != 0 {
		t.Fatalf("second backup of identical data stored %d blobs", s2.Stats.BlobsNew)
	}
	dir := t.TempDir()
	st, err := restoreTo(t, r, s2, false, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != int64(len(files)) {
		t.Fatalf("restored %d files, want %d", st.Files, len(files))
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, "dir", p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs after restore", p)
		}
		fi, _ := os.Stat(filepath.Join(dir, "dir", p))
		if fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(time.Unix(1700000000, 0)) {
			t.Fatalf("%s: mode %v mtime %v", p, fi.Mode(), fi.ModTime())
		}
	}
	// Delta restore over a damaged copy rewrites only the damaged block.
	p := filepath.Join(dir, "dir", "text")
	f, _ := os.OpenFile(p, os.O_WRONLY, 0)
	f.WriteAt([]byte("XXXX"), 100000)
	f.Close()
	st, err = restoreTo(t, r, s2, true, dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.BytesWritten != int64(r.Config().BlockSize) {
		t.Fatalf("delta wrote %d bytes, want one block", st.BytesWritten)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, files["text"]) {
		t.Fatal("delta restore did not repair the file")
	}
}

func TestWrongKeyAndPassphrase(t *testing.T) {
	r, dir, _ := newTestRepo(t)
	ctx := context.Background()
	be, _ := fs.New(dir)
	other := filepath.Join(t.TempDir(), "other.key")
	GenerateKeyFile(other)
	sec, _ := KeyFile(other)
	if _, err := Open(ctx, be, sec, nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a wrong key: %v", err)
	}
	pp, _ := Passphrase("correct horse battery")
	if _, err := Open(ctx, be, pp, nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a passphrase on a key-file repository: %v", err)
	}
	// Rotation: add a passphrase; both open the repository.
	if _, err := r.AddKey(ctx, pp); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, be, pp, nil); err != nil {
		t.Fatalf("open with the added passphrase: %v", err)
	}
	if !strings.Contains(pp.String(), "passphrase") || strings.Contains(pp.GoString(), "horse") {
		t.Fatal("secret prints its material")
	}
	empty, _ := fs.New(t.TempDir())
	if _, err := Open(ctx, empty, sec, nil); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("open of an empty directory: %v", err)
	}
	if _, err := Init(ctx, be, sec, InitOptions{}); err == nil {
		t.Fatal("init over an existing repository succeeded")
	}
}

// TestFlippedByteDetected flips one byte in every kind of object and checks
// that verify --read-data names it and restore refuses.
func TestFlippedByteDetected(t *testing.T) {
	kinds := []string{"data", "index", "snapshots"}
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			r, dir, sec := newTestRepo(t)
			files := map[string][]byte{"a": compressible(2<<20, 3), "b": compressible(300000, 4)}
			backupFiles(t, r, "a", files)
			var victim string
			filepath.WalkDir(filepath.Join(dir, kind), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && victim == "" {
					victim = p
				}
				return nil
			})
			data, _ := os.ReadFile(victim)
			data[len(data)/2] ^= 0x01
			os.Chmod(victim, 0o600)
			if err := os.WriteFile(victim, data, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			be, _ := fs.New(dir)
			r2, err := Open(ctx, be, sec, nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r2.Verify(ctx, VerifyOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatalf("verify found nothing wrong after flipping a byte of %s", victim)
			}
			name := filepath.Base(victim)
			if !strings.Contains(strings.Join(rep.Problems, "\n"), name[:8]) {
				t.Fatalf("verify problems do not name %s: %v", name, rep.Problems)
			}
			// Restore must refuse rather than write wrong data.
			snaps, err := r2.Snapshots(ctx, "a")
			if err != nil {
				return // the manifest itself is damaged: nothing can be restored from it
			}
			for _, s := range snaps {
				if _, err := restoreTo(t, r2, s, false, t.TempDir()); err == nil {
					t.Fatal("restore succeeded from a damaged repository")
				}
			}
		})
	}
}

func TestNamedObjects(t *testing.T) {
	r, dir, _ := newTestRepo(t)
	ctx := context.Background()
	seg := compressible(1<<20, 5)
	if existed, err := r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", seg, CodecS2); err != nil || existed {
		t.Fatal(existed, err)
	}
	if existed, err := r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", seg, CodecS2); err != nil || !existed {
		t.Fatalf("identical re-push: %v %v", existed, err)
	}
	other := append([]byte(nil), seg...)
	other[10] ^= 1
	if _, err := r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", other, CodecZstd); !errors.Is(err, ErrConflict) {
		t.Fatalf("different content: %v", err)
	}
	got, err := r.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000001")
	if err != nil || !bytes.Equal(got, seg) {
		t.Fatal("stored segment changed", err)
	}
	if _, err := r.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000002"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing segment: %v", err)
	}
	for _, bad := range []string{"../x", "a/../../b", "", "a//b"} {
		if _, err := r.PutNamed(ctx, "wal", "db", bad, seg, CodecNone); err == nil {
			t.Fatalf("name %q accepted", bad)
		}
	}
	// A named object moved to another name no longer opens.
	src := filepath.Join(dir, "wal", "db", "00000001", "000000010000000000000001")
	dst := filepath.Join(dir, "wal", "db", "00000001", "000000010000000000000003")
	data, _ := os.ReadFile(src)
	os.WriteFile(dst, data, 0o600)
	if _, err := r.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000003"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("renamed object opened: %v", err)
	}
}

func TestLocks(t *testing.T) {
	r, _, _ := newTestRepo(t)
	ctx := context.Background()
	l1, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Lock(ctx, "asset/db", "backup", true, 300*time.Millisecond)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid") {
		t.Fatalf("second exclusive lock: %v", err)
	}
	// Another scope is free; shared locks coexist.
	l2, err := r.Lock(ctx, "asset/other", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := r.Lock(ctx, "repo", "backup", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := r.Lock(ctx, "repo", "backup", false, 0)
	if err != nil {
		t.Fatal(err)
	}
	l1.Unlock()
	l2.Unlock()
	s1.Unlock()
	s2.Unlock()
	l3, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l3.Unlock()
	// A lock whose refresh is long overdue is stale and removed.
	old := r.Clock
	r.Clock = func() time.Time { return old().Add(-2 * LockStaleAfter) }
	if _, err := r.Lock(ctx, "asset/db", "crashed", true, 0); err != nil {
		t.Fatal(err)
	}
	r.Clock = old
	l4, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatalf("stale lock not taken over: %v", err)
	}
	l4.Unlock()
}

func TestTreeRejectsUnsafePaths(t *testing.T) {
	for _, p := range []string{"/etc/passwd", "../x", "a/../../x", "a//b", "", "a/"} {
		if err := CheckPath(p); err == nil {
			t.Errorf("path %q accepted", p)
		}
	}
	if err := CheckPath("base/1/1259"); err != nil {
		t.Error(err)
	}
}

func FuzzDecodeIndex(f *testing.F) {
	var id ID
	blob := ID{1, 2, 3}
	for _, idLen := range []int{compactIDLen, len(ID{})} {
		f.Add(encodeIndex([]packEntry{{ID: id, Frames: []frameHeader{{SealedLen: 10, RawLen: 5, Blobs: []blobEntry{{Type: DataBlob, ID: blob, Len: 5}}}}}}, idLen))
	}
	f.Add([]byte("LBIX\x01\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, idLen := range []int{compactIDLen, len(ID{})} {
			packs, err := decodeIndex(b, idLen)
			if err == nil {
				if got := encodeIndex(packs, idLen); !bytes.Equal(got, b) {
					t.Fatalf("re-encoding with %d-byte IDs differs", idLen)
				}
			}
		}
	})
}

func FuzzDecodeTree(f *testing.F) {
	for _, idLen := range []int{compactIDLen, len(ID{})} {
		f.Add(appendNode(append([]byte(nil), treeMagic...), &Node{Path: "a/b", Type: NodeFile, Size: 3, Blocks: []Block{{ID: ID{1}, Len: 3}}}, nil, idLen))
	}
	f.Add(appendNode(append([]byte(nil), treeMagic...), &Node{Path: "a/b", Type: NodeFile, Size: 3, Blocks: make([]Block, 3)},
		&nodePatch{base: ID{7}, count: 3, at: []uint32{0, 2}, blocks: []Block{{ID{1}, 1}, {ID{2}, 1}}}, compactIDLen))
	f.Add(append(append([]byte(nil), treeMagic...), 2, 3, 'a'))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, idLen := range []int{compactIDLen, len(ID{})} {
			nodes, err := decodeTreeBlob(b, idLen)
			if err != nil {
				continue
			}
			for _, n := range nodes {
				if CheckPath(n.Path) != nil {
					t.Fatalf("unsafe path %q decoded", n.Path)
				}
			}
		}
	})
}

func FuzzDecodePackHeader(f *testing.F) {
	f.Add(encodePackHeader([]frameHeader{{SealedLen: 40, RawLen: 8, Flags: 1, Blobs: []blobEntry{{Type: TreeBlob, ID: ID{1}, Len: 8}}}}, compactIDLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodePackHeader(b, compactIDLen)
		decodePackHeader(b, len(ID{}))
	})
}

func TestCopyRestoresAlone(t *testing.T) {
	r, _, _ := newTestRepo(t)
	ctx := context.Background()
	files := map[string][]byte{"a": compressible(3<<20, 7), "b": []byte("small")}
	s := backupFiles(t, r, "a", files)
	if _, err := r.PutNamed(ctx, "wal", "a", "00000001/000000010000000000000001", compressible(1<<20, 8), CodecS2); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dst, _ := fs.New(dir)
	keyPath := filepath.Join(t.TempDir(), "copy.key")
	GenerateKeyFile(keyPath)
	sec, _ := KeyFile(keyPath)
	if err := r.InitCopy(ctx, dst, sec); err != nil {
		t.Fatal(err)
	}
	if err := r.InitCopy(ctx, dst, sec); err == nil {
		t.Fatal("a second InitCopy over the copy succeeded")
	}
	st, err := r.Sync(ctx, dst)
	if err != nil || st.Objects == 0 {
		t.Fatalf("sync: %+v %v", st, err)
	}
	if st, err := r.Sync(ctx, dst); err != nil || st.Objects != 0 {
		t.Fatalf("second sync copied again: %+v %v", st, err)
	}
	c, err := Open(ctx, dst, sec, nil)
	if err != nil {
		t.Fatalf("open the copy with its own key: %v", err)
	}
	snaps, err := c.Snapshots(ctx, "a")
	if err != nil || len(snaps) != 1 || snaps[0].ID != s.ID {
		t.Fatalf("copy snapshots: %v %v", snaps, err)
	}
	out := t.TempDir()
	if _, err := restoreTo(t, c, snaps[0], false, out); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "dir", "a")); !bytes.Equal(got, files["a"]) {
		t.Fatal("file restored from the copy differs")
	}
	if rep, err := c.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
		t.Fatalf("verify the copy: %v %v", rep.Problems, err)
	}
}

// TestLockClaimStampedEarlierDoesNotWin: a claimant whose clock is behind
// (or that stamped its claim and was paused before writing it) must not
// win over a holder that already checked.
func TestLockClaimStampedEarlierDoesNotWin(t *testing.T) {
	t.Parallel()
	r, dir, sec := newTestRepo(t)
	ctx := t.Context()
	held, err := r.Lock(ctx, "asset/db", "backup", true, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock()
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	late, err := Open(ctx, be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.Clock = func() time.Time { return time.Now().Add(-time.Minute) }
	if l, err := late.Lock(ctx, "asset/db", "backup", true, 0); !errors.Is(err, ErrLocked) {
		if l != nil {
			l.Unlock()
		}
		t.Fatalf("an earlier-stamped claim got a held lock: %v", err)
	}
}

// TestLockClaimsAtOnceNeverBothWin starts claimants on one scope together,
// each through its own handle as separate processes would, with clocks
// that disagree, and counts holders at every instant.
func TestLockClaimsAtOnceNeverBothWin(t *testing.T) {
	t.Parallel()
	_, dir, sec := newTestRepo(t)
	ctx := t.Context()
	const rounds, claimants = 20, 4
	for round := range rounds {
		var (
			mu      sync.Mutex
			holding int
			wins    int
			wg      sync.WaitGroup
			start   = make(chan struct{})
		)
		for i := range claimants {
			be, err := fs.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			h, err := Open(ctx, be, sec, nil)
			if err != nil {
				t.Fatal(err)
			}
			skew := time.Duration(i-claimants/2) * time.Second
			h.Clock = func() time.Time { return time.Now().Add(skew) }
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer h.Close()
				<-start
				l, err := h.Lock(ctx, "asset/db", "backup", true, 0)
				if err != nil {
					if !errors.Is(err, ErrLocked) {
						t.Errorf("round %d: %v", round, err)
					}
					return
				}
				mu.Lock()
				holding++
				wins++
				if holding > 1 {
					t.Errorf("round %d: %d holders at once", round, holding)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				holding--
				mu.Unlock()
				l.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if wins == 0 {
			t.Logf("round %d: every claimant backed off", round)
		}
	}
}
