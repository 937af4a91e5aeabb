package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDeltaTrustsOnlyAnUntouchedRecord: a delta restore into a directory
// a restore recorded reads none of the files still as that restore left
// them, writes only the blocks that differ, and reads every file the
// record cannot vouch for: one written behind its back with its mtime
// set back, one whose earlier snapshot is gone, and all of them when the
// record does not open.
func TestDeltaTrustsOnlyAnUntouchedRecord(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	bs := r.Config().BlockSize
	files := map[string][]byte{
		"big":     compressible(64*bs, 1),
		"same":    compressible(32*bs, 2),
		"touched": compressible(16*bs, 3),
	}
	s1 := backupFiles(t, r, "a", files)
	dir := t.TempDir()
	var zero func(string) bool
	restore := func(s *Snapshot, delta bool) RestoreStats {
		t.Helper()
		idx, err := r.LoadIndex(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		st, err := r.RestoreTree(context.Background(), idx, s.Tree, RestoreOptions{Dir: dir, UID: -1, GID: -1, Delta: delta, Record: true, Zero: zero})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(want map[string][]byte) {
		t.Helper()
		for p, w := range want {
			if got, err := os.ReadFile(filepath.Join(dir, "dir", p)); err != nil || !bytes.Equal(got, w) {
				t.Fatalf("%s differs after the delta restore (%v)", p, err)
			}
		}
	}
	restore(s1, false)

	files2 := maps.Clone(files)
	files2["big"] = bytes.Clone(files["big"])
	files2["big"][3*bs+7] ^= 0xff
	files2["big"][40*bs] ^= 0xff
	s2 := backupFiles(t, r, "a", files2)
	touched := filepath.Join(dir, "dir", "touched")
	f, err := os.OpenFile(touched, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XXXX"), int64(5*bs))
	f.Close()
	if err := os.Chtimes(touched, time.Unix(1700000000, 0), time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	same := filepath.Join(dir, "dir", "same")
	before := ctime(t, same)
	if st := restore(s2, true); st.BytesCompared != int64(16*bs) || st.BytesWritten != int64(3*bs) {
		t.Fatalf("delta over the record read %d bytes and wrote %d; want %d read (the touched file) and %d written",
			st.BytesCompared, st.BytesWritten, 16*bs, 3*bs)
	}
	check(files2)
	if after := ctime(t, same); after != before {
		t.Fatalf("the delta restore touched a file it had nothing to change in (ctime %d, then %d)", before, after)
	}
	if st := restore(s2, true); st.BytesCompared != 0 || st.BytesWritten != 0 {
		t.Fatalf("delta over an up-to-date directory read %d bytes and wrote %d", st.BytesCompared, st.BytesWritten)
	}

	// A record naming a snapshot the repository no longer holds.
	recPath := filepath.Join(dir, RestoreRecordName)
	sealed, err := os.ReadFile(recPath)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := r.crypt.openObject(recordAAD, sealed)
	if err != nil {
		t.Fatal(err)
	}
	var rec restoreRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Trees = []ID{{1}}
	rf := rec.Files["dir/big"]
	rf.Blocks = ID{2}
	rec.Files["dir/big"] = rf
	payload, _ = json.Marshal(rec)
	if err := os.WriteFile(recPath, r.crypt.sealObject(recordAAD, payload), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := restore(s2, true); st.BytesCompared != int64(64*bs) || st.BytesWritten != 0 {
		t.Fatalf("delta over a record of a lost snapshot read %d bytes and wrote %d; want the big file read, nothing written", st.BytesCompared, st.BytesWritten)
	}

	// A record that does not open is not used: every file is read.
	if err := os.WriteFile(recPath, []byte("LBO1 forged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := restore(s1, true); st.BytesCompared != int64(112*bs) || st.BytesWritten != int64(2*bs) {
		t.Fatalf("delta without a usable record read %d bytes and wrote %d; want %d read and %d written", st.BytesCompared, st.BytesWritten, 112*bs, 2*bs)
	}
	check(files)

	// A file restored as zeros (a --database restore leaving it out) is
	// not recorded as holding its blocks: the next delta reads and writes it.
	os.RemoveAll(dir)
	zero = func(p string) bool { return p == "dir/same" }
	restore(s1, false)
	zero = nil
	if st := restore(s1, true); st.BytesCompared != int64(32*bs) || st.BytesWritten != int64(32*bs) {
		t.Fatalf("delta over a file restored as zeros read %d bytes and wrote %d; want it read and written whole (%d)", st.BytesCompared, st.BytesWritten, 32*bs)
	}
	check(files)
}

func ctime(t *testing.T, p string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ctim.Nano()
}
