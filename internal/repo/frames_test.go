package repo

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// TestIncompressibleStoredRawAndZeroOnce: frames of data that does not
// compress are stored without the zstd flag (no decompression on
// restore), compressible frames with it, an all-zero block once however
// often it occurs, and all of it restores exactly.
func TestIncompressibleStoredRawAndZeroOnce(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	random := make([]byte, 3<<20)
	rand.Read(random)
	files := map[string][]byte{"random": random, "text": compressible(3<<20, 1), "zeros": make([]byte, 2<<20)}
	s := backupFiles(t, r, "a", files)
	bs := r.Config().BlockSize
	// A block is stored once however often it occurs: the zero blocks
	// are one blob.
	distinct := map[ID]bool{}
	for _, data := range files {
		for off := 0; off < len(data); off += bs {
			distinct[r.crypt.blobID(data[off:off+bs])] = true
		}
	}
	if !distinct[r.crypt.blobID(make([]byte, bs))] {
		t.Fatal("no zero block")
	}
	if got, want := s.Stats.BlobsNew, int64(len(distinct)); got < want || got > want+3 {
		t.Errorf("%d blobs stored, want the %d distinct blocks and a tree blob or two", got, want)
	}
	idx, err := r.LoadIndex(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	kind := func(data []byte) (raw, zstd int) {
		for off := 0; off < len(data); off += bs {
			_, fl, ok := idx.Lookup(r.crypt.blobID(data[off : off+bs]))
			if !ok {
				t.Fatalf("block at %d not in the index", off)
			}
			if fl.Flags&frameFlagZstd != 0 {
				zstd++
			} else {
				raw++
				if int(fl.Sealed) != int(fl.RawLen)+28 {
					t.Errorf("raw frame: %d sealed bytes for %d raw", fl.Sealed, fl.RawLen)
				}
			}
		}
		return raw, zstd
	}
	if raw, zstd := kind(random); zstd != 0 {
		t.Errorf("random data: %d blocks in compressed frames, %d raw; want all raw", zstd, raw)
	}
	if raw, zstd := kind(files["text"]); raw != 0 {
		t.Errorf("text: %d blocks in raw frames, %d compressed; want all compressed", raw, zstd)
	}
	dir := t.TempDir()
	if _, err := restoreTo(t, r, s, false, dir); err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		if got, err := os.ReadFile(filepath.Join(dir, "dir", p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs after restore (%v)", p, err)
		}
	}
}

// Once a frame does not compress, the sink tries only the start of the
// next before compressing it whole: random data is compressed once, not
// frame after frame, and data that compresses again is compressed again.
func TestIncompressibleFramesProbed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r, _, _ := newTestRepo(t)
	w := r.NewWriter(nil)
	sink := w.NewSink()
	random := make([]byte, 4*r.Config().FrameSize)
	rand.Read(random)
	save := func(data []byte) {
		for off := 0; off < len(data); off += r.Config().BlockSize {
			if _, _, err := sink.Save(ctx, DataBlob, data[off:off+r.Config().BlockSize]); err != nil {
				t.Fatal(err)
			}
		}
	}
	save(random)
	if got := w.Stats().FramesUnprobed; got != 3 {
		t.Fatalf("%d of 4 random frames stored raw on their start alone, want the 3 after the first", got)
	}
	save(compressible(2*r.Config().FrameSize, 5))
	if err := sink.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := w.Stats().FramesUnprobed; got != 3 {
		t.Fatalf("%d frames stored raw unprobed after compressible data, want still 3", got)
	}
	if sink.probe {
		t.Fatal("the sink still probes after frames that compress")
	}
}
