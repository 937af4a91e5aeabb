package repo

// The attacker suite: someone holds only a put-only credential (a backup
// host's, the documented backup role on MinIO) and not the key. They can
// list, read and create objects under any free name, never overwrite or
// delete. For every object area they plant junk, truncated copies,
// genuine objects replayed under other names and names that sort after
// every genuine one (future-dated); backups, restores, copies, sweeps and
// verify must go on with the genuine data, and every planted object must
// be reported.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/s3test"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// attacked is a repository and the credentials around it.
type attacked struct {
	r *Repository
	// attacker is the put-only credential without the key.
	attacker storage.Backend
	// admin may delete (the expire role): it plays a sweep that removed
	// objects, so that they can be replayed.
	admin storage.Backend
	// newCopy makes an empty backend for a copy repository.
	newCopy func(t *testing.T) storage.Backend
}

// site opens a fresh attacked repository.
type site struct {
	name string
	open func(t *testing.T) *attacked
}

// attackSites are the stores the suite runs on: a directory, and MinIO
// with the documented backup and expire roles.
func attackSites(t *testing.T) []site {
	var srv *s3test.Server
	var buckets atomic.Int64
	minio := func(t *testing.T) *attacked {
		newBucket := func(t *testing.T) string {
			name := fmt.Sprintf("attack-%d", buckets.Add(1))
			srv.CreateBucket(t, name, false)
			srv.CreateUser(t, name+"-backup", "backup-secret-"+name, name+"-backup", s3test.BackupRolePolicy(name))
			srv.CreateUser(t, name+"-expire", "expire-secret-"+name, name+"-expire", s3test.ExpireRolePolicy(name))
			return name
		}
		as := func(t *testing.T, bucket, role string) storage.Backend {
			be, err := s3.New(t.Context(), s3.Options{Bucket: bucket, Prefix: "repo", Endpoint: srv.Endpoint, Region: srv.Region,
				PathStyle: true, AccessKey: bucket + "-" + role, SecretKey: role + "-secret-" + bucket})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { be.Close() })
			return be
		}
		bucket := newBucket(t)
		a := &attacked{attacker: as(t, bucket, "backup"), admin: as(t, bucket, "expire")}
		a.r = initOn(t, as(t, bucket, "backup"))
		a.newCopy = func(t *testing.T) storage.Backend { return as(t, newBucket(t), "backup") }
		return a
	}
	file := func(t *testing.T) *attacked {
		dir := t.TempDir()
		open := func() storage.Backend {
			be, err := fs.New(dir)
			if err != nil {
				t.Fatal(err)
			}
			return be
		}
		a := &attacked{attacker: open(), admin: open(), r: initOn(t, open())}
		a.newCopy = func(t *testing.T) storage.Backend {
			be, err := fs.New(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return be
		}
		return a
	}
	srv = s3test.Start(t)
	return []site{{"file", file}, {"minio", minio}}
}

// initOn makes a repository on be and opens it.
func initOn(t *testing.T, be storage.Backend) *Repository {
	t.Helper()
	sec := testSecret(t)
	if _, err := Init(t.Context(), be, sec, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := Open(t.Context(), be, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func testSecret(t *testing.T) Secret {
	t.Helper()
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	sec, err := KeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

// forEachSite runs test on every store, in parallel.
func forEachSite(t *testing.T, test func(t *testing.T, a *attacked)) {
	t.Parallel()
	for _, s := range attackSites(t) {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			test(t, s.open(t))
		})
	}
}

// plant puts data under name as the attacker.
func (a *attacked) plant(t *testing.T, name string, data []byte) string {
	t.Helper()
	if err := a.attacker.Put(t.Context(), name, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("plant %s: %v", name, err)
	}
	return name
}

// read reads a stored object as the attacker can.
func (a *attacked) read(t *testing.T, name string) []byte {
	t.Helper()
	data, err := storage.ReadAll(t.Context(), a.attacker, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func hexHash(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// firstUnder returns the first object under prefix.
func (a *attacked) firstUnder(t *testing.T, prefix string) string {
	t.Helper()
	names, err := listNames(t.Context(), a.attacker, prefix)
	if err != nil || len(names) == 0 {
		t.Fatalf("list %s: %v %v", prefix, names, err)
	}
	return names[0]
}

// mustReportAll fails unless verify reports every planted name (and only
// objects not authentic), and checks that the genuine data verifies.
func mustReportAll(t *testing.T, r *Repository, planted ...string) {
	t.Helper()
	rep, err := r.Verify(t.Context(), VerifyOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range rep.Unauthentic {
		got = append(got, u.Name)
	}
	for _, p := range planted {
		if !slices.Contains(got, p) {
			t.Errorf("verify did not report %s; it reported %v", p, got)
		}
		found := false
		for _, pr := range rep.Problems {
			found = found || strings.Contains(pr, p)
		}
		if !found {
			t.Errorf("no problem names %s: %v", p, rep.Problems)
		}
	}
	if len(rep.Problems) != len(rep.Unauthentic) {
		t.Errorf("verify found problems besides the planted objects: %v", rep.Problems)
	}
}

// mustRestore restores s and compares every file with files.
func mustRestore(t *testing.T, r *Repository, s *Snapshot, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	if _, err := restoreTo(t, r, s, false, dir); err != nil {
		t.Fatalf("restore: %v", err)
	}
	for p, want := range files {
		if got, err := os.ReadFile(filepath.Join(dir, "dir", p)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("restored %s differs (%v)", p, err)
		}
	}
}

// mustCopy syncs r to a new copy, checks that no planted object went
// there and that the copy restores s alone.
func mustCopy(t *testing.T, a *attacked, s *Snapshot, files map[string][]byte, planted ...string) *Repository {
	t.Helper()
	ctx := t.Context()
	dst := a.newCopy(t)
	sec := testSecret(t)
	if err := a.r.InitCopy(ctx, dst, sec); err != nil {
		t.Fatal(err)
	}
	st, err := a.r.Sync(ctx, dst)
	if err != nil {
		t.Fatalf("copy: %v", err)
	}
	var skipped []string
	for _, u := range st.Skipped {
		skipped = append(skipped, u.Name)
	}
	for _, p := range planted {
		if !slices.Contains(skipped, p) {
			t.Errorf("copy did not report %s as skipped: %v", p, skipped)
		}
		if _, err := dst.Stat(ctx, p); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("copy spread %s: %v", p, err)
		}
	}
	c, err := Open(ctx, dst, sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if s != nil {
		mustRestore(t, c, s, files)
	}
	return c
}

func TestAttackerIndex(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		files := map[string][]byte{"a": compressible(300<<10, 1), "b": []byte("small")}
		s1 := backupFiles(t, a.r, "a", files)
		genuine := a.read(t, a.firstUnder(t, "index/"))
		seven := []byte("garbage")
		truncated := genuine[:len(genuine)/2]
		planted := []string{
			a.plant(t, "index/"+hexHash(seven), seven),         // a 7-byte object named by its hash
			a.plant(t, "index/"+hexHash(truncated), truncated), // a truncated genuine one
			a.plant(t, "index/"+hexHash([]byte("x")), genuine), // a genuine one under another name
			a.plant(t, "index/ffffffff", []byte("not named by a hash")),
		}
		// Backup (which reads the index), restore and copy go on.
		s2 := backupFiles(t, a.r, "a", map[string][]byte{"c": compressible(200<<10, 2)})
		v, err := a.r.OpenWriteView(ctx, nil)
		if err != nil {
			t.Fatalf("open a backup's view: %v", err)
		}
		s3 := writeFiles(t, a.r, v.Index, "a", map[string][]byte{"d": []byte("more")})
		if err := a.r.CommitSnapshot(ctx, v, s3); err != nil {
			t.Fatalf("commit: %v", err)
		}
		mustRestore(t, a.r, s1, files)
		mustRestore(t, a.r, s2, map[string][]byte{"c": compressible(200<<10, 2)})
		mustCopy(t, a, s1, files, planted...)
		if _, err := a.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s1, s2, s3}}); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		mustReportAll(t, a.r, planted...)
	})
}

// shaPrefixed finds data whose SHA-256 starts with the hex digits prefix.
func shaPrefixed(prefix string) []byte {
	for i := 0; ; i++ {
		data := fmt.Appendf(nil, "junk %d", i)
		if strings.HasPrefix(hexHash(data), prefix) {
			return data
		}
	}
}

func TestAttackerSnapshots(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		files := map[string][]byte{"a": compressible(100<<10, 3)}
		s1 := backupFiles(t, a.r, "a", files)
		genuine := a.read(t, "snapshots/"+s1.ID.String())
		truncated := genuine[:len(genuine)-1]
		// Junk sharing the genuine snapshot's first digits would make a
		// short ID ambiguous.
		twin := shaPrefixed(s1.ID.String()[:4])
		planted := []string{
			a.plant(t, "snapshots/"+hexHash(twin), twin),
			a.plant(t, "snapshots/"+hexHash(truncated), truncated),
			a.plant(t, "snapshots/"+hexHash([]byte("y")), genuine),
			a.plant(t, "snapshots/99999999999999999999", []byte("{}")),
		}
		snaps, err := a.r.Snapshots(ctx, "")
		if err != nil || len(snaps) != 1 || snaps[0].ID != s1.ID {
			t.Fatalf("snapshots with planted ones: %v %v", snaps, err)
		}
		found, err := a.r.FindSnapshot(ctx, s1.ID.String()[:4])
		if err != nil || found.ID != s1.ID {
			t.Fatalf("find by a prefix a planted object shares: %v %v", found, err)
		}
		s2 := backupFiles(t, a.r, "a", map[string][]byte{"b": []byte("second")})
		if snaps, err := a.r.Snapshots(ctx, "a"); err != nil || len(snaps) != 2 {
			t.Fatalf("snapshots after a second backup: %d %v", len(snaps), err)
		}
		mustRestore(t, a.r, s1, files)
		c := mustCopy(t, a, s1, files, planted...)
		if snaps, err := c.Snapshots(ctx, ""); err != nil || len(snaps) != 2 {
			t.Fatalf("copy snapshots: %d %v", len(snaps), err)
		}
		if _, err := a.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s1, s2}}); err != nil {
			t.Fatalf("sweep: %v", err)
		}
		mustReportAll(t, a.r, planted...)
	})
}

func TestAttackerMarks(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		var off time.Duration
		shiftClock(a.r, &off)
		s1 := backupFiles(t, a.r, "a", map[string][]byte{"one": compressible(300<<10, 4)})
		files := map[string][]byte{"two": compressible(300<<10, 5)}
		s2 := backupFiles(t, a.r, "a", files)
		off = 2 * time.Hour
		// A first sweep that condemns nothing, then one that condemns
		// the pack of s1, whose manifest expire deleted.
		if _, err := a.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s1, s2}}); err != nil {
			t.Fatal(err)
		}
		older := a.firstUnder(t, "marks/")
		if err := a.admin.Delete(ctx, "snapshots/"+s1.ID.String()); err != nil {
			t.Fatal(err)
		}
		off += time.Minute
		rep, err := a.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2}})
		if err != nil || len(rep.Condemned) != 1 {
			t.Fatalf("sweep: %v %+v", err, rep)
		}
		names, _ := a.r.markNames(ctx)
		newest := a.read(t, names[len(names)-1])
		planted := []string{
			a.plant(t, "marks/99999999999999999999-00000000", []byte{0}),
			a.plant(t, "marks/99999999999999999998-deadbeef", a.read(t, older)), // a genuine, older mark replayed
			a.plant(t, "marks/99999999999999999997-deadbeef", newest[:len(newest)-3]),
		}
		names, err = a.r.markNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		m, err := a.r.latestMark(ctx, names)
		if err != nil || len(m.Condemned) != 1 {
			t.Fatalf("newest mark with planted ones: %+v %v", m, err)
		}
		// A backup leaves the condemned pack alone and commits.
		v, err := a.r.OpenWriteView(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for p := range m.packSet(false) {
			if _, ok := v.Index.Packs()[p]; ok {
				t.Fatalf("the backup's view reuses condemned pack %s", p.Short())
			}
		}
		s3 := writeFiles(t, a.r, v.Index, "a", map[string][]byte{"one": compressible(300<<10, 4)})
		if err := a.r.CommitSnapshot(ctx, v, s3); err != nil {
			t.Fatalf("commit: %v", err)
		}
		mustRestore(t, a.r, s3, map[string][]byte{"one": compressible(300<<10, 4)})
		mustRestore(t, a.r, s2, files)
		if _, err := a.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2, s3}}); err != nil {
			t.Fatalf("sweep with planted marks: %v", err)
		}
		mustReportAll(t, a.r, planted...)
	})
}

func TestAttackerLocks(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		l, err := a.r.Lock(ctx, "asset/a", "backup of a", true, 0)
		if err != nil {
			t.Fatal(err)
		}
		held := a.read(t, a.firstUnder(t, "locks/"))
		l.Unlock()
		planted := []string{
			a.plant(t, "locks/"+strings.Repeat("f", 32), []byte("junk")),
			a.plant(t, "locks/"+strings.Repeat("e", 32), held), // a genuine lock replayed under another name
			a.plant(t, "locks/"+strings.Repeat("d", 32), make([]byte, 1<<20)),
		}
		if locks, err := a.r.Locks(ctx); err != nil || len(locks) != 0 {
			t.Fatalf("locks with planted objects: %v %v", locks, err)
		}
		l, err = a.r.Lock(ctx, "asset/a", "backup of a", true, 0)
		if err != nil {
			t.Fatalf("lock with planted lock objects: %v", err)
		}
		l.Unlock()
		rep, err := a.r.Verify(ctx, VerifyOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range rep.Unauthentic {
			if u.Name == planted[2] && !strings.Contains(u.Reason, "larger than") {
				t.Errorf("a 1 MiB lock object was read, not refused by its size: %s", u.Reason)
			}
		}
		mustReportAll(t, a.r, planted...)
	})
}

const (
	seg2 = "00000001/000000010000000000000002"
	seg3 = "00000001/000000010000000000000003"
	seg4 = "00000001/000000010000000000000004"
)

func TestAttackerNamedObjects(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		r := a.r
		one := compressible(1<<20, 6)
		if _, err := r.PutNamed(ctx, "wal", "a", "00000001/000000010000000000000001", one, CodecS2); err != nil {
			t.Fatal(err)
		}
		planted := []string{
			// Junk at the next segment's name, before it is pushed.
			a.plant(t, "wal/a/"+seg2, []byte("squatted")),
			// The genuine previous segment, replayed at the one after.
			a.plant(t, "wal/a/"+seg3, a.read(t, "wal/a/00000001/000000010000000000000001")),
			// The asset's identity, before anything wrote it.
			a.plant(t, "meta/a/identity", []byte("{}")),
		}
		two, three := compressible(1<<20, 7), compressible(1<<20, 8)
		for rel, data := range map[string][]byte{seg2: two, seg3: three} {
			if existed, err := r.PutNamed(ctx, "wal", "a", rel, data, CodecS2); err != nil || existed {
				t.Fatalf("push %s over a squatter: existed %v, %v", rel, existed, err)
			}
			if existed, err := r.PutNamed(ctx, "wal", "a", rel, data, CodecS2); err != nil || !existed {
				t.Fatalf("push %s again: existed %v, %v", rel, existed, err)
			}
			if _, err := r.PutNamed(ctx, "wal", "a", rel, one, CodecS2); !errors.Is(err, ErrConflict) {
				t.Fatalf("push other content as %s: %v, want a conflict", rel, err)
			}
			if got, err := r.GetNamed(ctx, "wal", "a", rel); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("fetch %s: %v", rel, err)
			}
			if ok, err := r.HasNamed(ctx, "wal", "a", rel); err != nil || !ok {
				t.Fatalf("has %s: %v %v", rel, ok, err)
			}
		}
		ident := []byte(`{"system_id":"1","wal_segment_size":16777216}`)
		if _, err := r.PutNamed(ctx, "meta", "a", "identity", ident, CodecZstd); err != nil {
			t.Fatalf("identity over a squatter: %v", err)
		}
		if got, err := r.GetNamed(ctx, "meta", "a", "identity"); err != nil || !bytes.Equal(got, ident) {
			t.Fatalf("identity: %q %v", got, err)
		}
		var listed []string
		if err := r.ListNamed(ctx, "wal", "a", "", func(rel string, _ int64) error {
			listed = append(listed, rel)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := []string{"00000001/000000010000000000000001", seg2, seg3}
		if !slices.Equal(listed, want) {
			t.Fatalf("listed %v, want each file once: %v", listed, want)
		}
		// A squatter in the copy, at a name the primary fills later.
		dst := a.newCopy(t)
		sec := testSecret(t)
		if err := r.InitCopy(ctx, dst, sec); err != nil {
			t.Fatal(err)
		}
		if err := dst.Put(ctx, "wal/a/"+seg4, bytes.NewReader([]byte("squatted in the copy")), 20); err != nil {
			t.Fatal(err)
		}
		four := compressible(1<<20, 9)
		if _, err := r.PutNamed(ctx, "wal", "a", seg4, four, CodecS2); err != nil {
			t.Fatal(err)
		}
		st, err := r.Sync(ctx, dst)
		if err != nil {
			t.Fatalf("copy: %v", err)
		}
		if !slices.Contains(st.Squatted, "wal/a/"+seg4) || len(st.Skipped) != len(planted) {
			t.Fatalf("copy: squatted %v, skipped %v", st.Squatted, st.Skipped)
		}
		c, err := Open(ctx, dst, sec, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for rel, data := range map[string][]byte{seg2: two, seg3: three, seg4: four} {
			if got, err := c.GetNamed(ctx, "wal", "a", rel); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("fetch %s from the copy: %v", rel, err)
			}
		}
		if got, err := c.GetNamed(ctx, "meta", "a", "identity"); err != nil || !bytes.Equal(got, ident) {
			t.Fatalf("identity in the copy: %v", err)
		}
		// Every squatter was noted as it was met, for verify and check
		// (which meet them through the WAL and identity reads and
		// listings) to report.
		got := r.UnauthenticSince(0)
		for _, p := range planted {
			if !slices.ContainsFunc(got, func(u Unauthentic) bool { return u.Name == p }) {
				t.Errorf("%s not reported: %v", p, got)
			}
		}
	})
}

// TestReplayedIndexDoesNotShadow: an index object removed by a sweep with
// its pack, put back under its own name (it authenticates: it is
// genuine), names blobs that live elsewhere now.
func TestReplayedIndexDoesNotShadow(t *testing.T) {
	forEachSite(t, func(t *testing.T, a *attacked) {
		ctx := t.Context()
		files := map[string][]byte{"a": compressible(300<<10, 10)}
		backupFiles(t, a.r, "a", files)
		oldIndex := a.firstUnder(t, "index/")
		oldBytes := a.read(t, oldIndex)
		oldPack := a.firstUnder(t, "data/")
		for _, n := range []string{oldIndex, oldPack} {
			if err := a.admin.Delete(ctx, n); err != nil {
				t.Fatal(err)
			}
		}
		s2 := backupFiles(t, a.r, "a", files)
		a.plant(t, oldIndex, oldBytes)
		mustRestore(t, a.r, s2, files)
		v, err := a.r.OpenWriteView(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		oldID, _ := ParseID(oldPack[strings.LastIndex(oldPack, "/")+1:])
		if _, ok := v.Index.Packs()[oldID]; ok {
			t.Fatal("a backup would reuse blobs of a deleted pack named by a replayed index object")
		}
		// Even an index that holds the dead place first falls back.
		x, err := a.r.loadIndex(ctx, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		tree := s2.Tree[0]
		if locs := x.Locations(tree); len(locs) != 2 {
			t.Fatalf("%d places of a blob stored twice, want 2", len(locs))
		}
		if _, err := a.r.LoadBlob(ctx, x, tree); err != nil {
			t.Fatalf("read a blob whose first place is gone: %v", err)
		}
	})
}

// TestObjectCaps: an object larger than its class allows is refused
// without being read whole.
func TestObjectCaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, dir, _ := newTestRepo(t)
	defer r.Close()
	big := make([]byte, maxLockSize+1)
	name := "locks/" + strings.Repeat("c", 32)
	if err := os.MkdirAll(filepath.Join(dir, "locks"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), big, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := r.getObject(ctx, name)
	if !errors.Is(err, ErrUnauthentic) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("read an oversized lock: %v", err)
	}
	for _, c := range []struct {
		name string
		want int64
	}{{"index/x", maxIndexSize}, {"snapshots/x", maxSnapshotSize}, {"marks/x", maxMarkSize}, {"config", maxConfigSize},
		{"meta/a/identity", sealedBound(maxNamedPayload)}, {"wal/a/x", sealedBound(1 << 30)}} {
		if got := r.objectCap(c.name); got != c.want {
			t.Errorf("cap of %s: %d, want %d", c.name, got, c.want)
		}
	}
	if _, err := r.PutNamed(ctx, "meta", "a", "big", make([]byte, maxNamedPayload+1), CodecZstd); err == nil {
		t.Fatal("stored a named object no reader would accept")
	}
}
