package repo

import (
	"context"
	"strings"
	"testing"
)

// New repositories name blobs with 16-byte IDs; repositories of the first
// format (32-byte IDs), made by earlier versions, are read and written as
// before, and their copies keep their format.
func TestBothIDFormats(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    InitOptions
		version int
		idLen   int
	}{
		{"compact", InitOptions{}, compactFormatVersion, compactIDLen},
		{"first", InitOptions{firstFormat: true}, formatVersion, len(ID{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			r, _, _ := newTestRepoWith(t, tc.opts)
			if r.cfg.Version != tc.version || r.crypt.idLen != tc.idLen {
				t.Fatalf("config version %d, ID length %d", r.cfg.Version, r.crypt.idLen)
			}
			files := map[string][]byte{"a": compressible(2<<20, 3), "b/c": []byte("small"), "z": make([]byte, 64<<10)}
			s := backupFiles(t, r, "a", files)
			if again := backupFiles(t, r, "a", files); again.Stats.BlobsNew != 0 {
				t.Fatalf("the same files stored %d new blobs", again.Stats.BlobsNew)
			}
			for _, id := range s.Tree {
				if id.compact() != (tc.idLen == compactIDLen) || len(id.String()) != 2*tc.idLen {
					t.Fatalf("tree blob ID %s", id)
				}
				if back, err := ParseID(id.String()); err != nil || back != id {
					t.Fatalf("ID %s parses back as %s, %v", id, back, err)
				}
			}
			// Every blob ID in the index takes idLen bytes: the payload
			// decodes with that length and with no other.
			names := listAll(t, r, "index/")
			if len(names) == 0 {
				t.Fatal("no index object")
			}
			id, _ := ParseID(strings.TrimPrefix(names[0], "index/"))
			plain, err := r.getContentObject(ctx, "index", id)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := decodeIndex(plain, tc.idLen); err != nil {
				t.Fatal(err)
			}
			if _, err := decodeIndex(plain, len(ID{})+compactIDLen-tc.idLen); err == nil {
				t.Fatal("the index also decodes with the other ID length")
			}

			checkRestores(t, r, s, files)
			if rep, err := r.Verify(ctx, VerifyOptions{ReadData: true}); err != nil || !rep.OK() {
				t.Fatalf("verify: %v %v", rep.Problems, err)
			}

			c, _ := syncedCopy(t, r)
			if c.cfg.Version != tc.version {
				t.Fatalf("the copy has format version %d", c.cfg.Version)
			}
			// A backup into the copy deduplicates against what the
			// primary stored: both name blobs alike.
			if s2 := backupFiles(t, c, "a", files); s2.Stats.BlobsNew != 0 || s2.Tree[0] != s.Tree[0] {
				t.Fatalf("a backup into the copy stored %d new blobs", s2.Stats.BlobsNew)
			}
		})
	}
}

// The worked examples of docs/FORMAT.md §5 and §6, in both ID lengths.
func TestFormatWorkedExamples(t *testing.T) {
	t.Parallel()
	a, one := ID{}, ID{}
	for i := range a {
		a[i], one[i] = 0xaa, 0x11
	}
	for _, tc := range []struct{ idLen, index, tree int }{{len(ID{}), 114, 54}, {compactIDLen, 82, 38}} {
		ix := encodeIndex([]packEntry{{ID: one, Frames: []frameHeader{{SealedLen: 300, RawLen: 8292, Flags: frameFlagZstd,
			Blobs: []blobEntry{{Type: DataBlob, ID: a, Len: 8192}, {Type: TreeBlob, ID: one, Len: 100}}}}}}, tc.idLen)
		tr := appendNode(append([]byte(nil), treeMagic...), &Node{Path: "base/1", Type: NodeFile, Mode: 0o600, UID: 26, GID: 26,
			Size: 5, MTime: -1, Blocks: []Block{{ID: a, Len: 5}}}, nil, tc.idLen)
		if len(ix) != tc.index || len(tr) != tc.tree {
			t.Fatalf("%d-byte IDs: index example %d bytes, tree example %d", tc.idLen, len(ix), len(tr))
		}
	}
}

// Memo keeps a fact once it loaded, and retries a load that failed.
func TestMemo(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	calls := 0
	load := func(fail bool) func() (any, error) {
		return func() (any, error) {
			calls++
			if fail {
				return nil, ErrMissing
			}
			return calls, nil
		}
	}
	if _, err := r.Memo("k", load(true)); err == nil {
		t.Fatal("a failed load was not returned")
	}
	for range 2 {
		if v, err := r.Memo("k", load(false)); err != nil || v != 2 {
			t.Fatalf("memo gave %v, %v; want the second call's 2", v, err)
		}
	}
	if calls != 2 {
		t.Fatalf("load called %d times, want 2", calls)
	}
}
