package repo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// flipReads damages reads "in transit": the first n reads of objects
// under prefix come back with one byte flipped; the stored objects stay
// whole. Only a fake can damage a read and not the object.
type flipReads struct {
	storage.Backend
	prefix string
	n      atomic.Int64
}

func (f *flipReads) damage(name string, rc io.ReadCloser) (io.ReadCloser, error) {
	if !strings.HasPrefix(name, f.prefix) || f.n.Add(-1) < 0 {
		return rc, nil
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	data[len(data)/2] ^= 0x10
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (f *flipReads) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	rc, err := f.Backend.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return f.damage(name, rc)
}

func (f *flipReads) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	rc, err := f.Backend.GetRange(ctx, name, off, n)
	if err != nil {
		return nil, err
	}
	return f.damage(name, rc)
}

// TestDamagedReadIsReadAgain: a read damaged once is read again and the
// restore is exact; damage on every read still fails, as corrupt.
func TestDamagedReadIsReadAgain(t *testing.T) {
	r, _, _ := newTestRepo(t)
	files := map[string][]byte{"text": compressible(3<<20, 1), "small": []byte("hello")}
	s := backupFiles(t, r, "a", files)
	if _, err := r.PutNamed(t.Context(), "wal", "a", "00000001/000000010000000000000001", compressible(1<<20, 3), CodecS2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		prefix  string
		flips   int64
		restore bool // else a named object is read
		ok      bool
	}{
		{"pack read damaged once", "data/", 1, true, true},
		{"pack read damaged every time", "data/", 1 << 30, true, false},
		{"named object damaged once", "wal/", 1, false, true},
		{"named object damaged every time", "wal/", 1 << 30, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fr := &flipReads{Backend: r.be, prefix: tc.prefix}
			damaged := *r
			damaged.be = fr
			idx, err := r.LoadIndex(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			fr.n.Store(tc.flips)
			if tc.restore {
				dir := t.TempDir()
				_, err = damaged.RestoreTree(t.Context(), idx, s.Tree, RestoreOptions{Dir: dir, UID: -1, GID: -1})
				if err == nil {
					for p, want := range files {
						if got, _ := os.ReadFile(filepath.Join(dir, "dir", p)); !bytes.Equal(got, want) {
							t.Fatalf("%s differs after a restore through a damaged read", p)
						}
					}
				}
			} else {
				var got []byte
				got, err = damaged.GetNamed(t.Context(), "wal", "a", "00000001/000000010000000000000001")
				if err == nil && !bytes.Equal(got, compressible(1<<20, 3)) {
					t.Fatal("a damaged read came back as different content")
				}
			}
			if fr.n.Load() >= tc.flips {
				t.Fatal("no read was damaged")
			}
			if tc.ok && err != nil {
				t.Fatalf("one damaged read failed the read: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("damage on every read: %v, want ErrCorrupt", err)
			}
		})
	}
}
