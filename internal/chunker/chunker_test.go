package chunker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func chunks(t *testing.T, tab *Table, data []byte, r io.Reader) [][]byte {
	t.Helper()
	c := New(tab, r)
	var out [][]byte
	for {
		ch, err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
	if got := bytes.Join(out, nil); !bytes.Equal(got, data) {
		t.Fatal("chunks do not join back into the stream")
	}
	return out
}

func random(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestSizesAndReassembly(t *testing.T) {
	tab := NewTable([]byte("seed"))
	data := random(8<<20, 1)
	// One byte at a time: chunk boundaries must not depend on read sizes.
	cs := chunks(t, tab, data, iotest.OneByteReader(bytes.NewReader(data)))
	whole := chunks(t, tab, data, bytes.NewReader(data))
	if len(cs) != len(whole) {
		t.Fatalf("%d chunks reading byte by byte, %d reading at once", len(cs), len(whole))
	}
	for i, c := range cs[:len(cs)-1] {
		if len(c) < Min || len(c) > Max {
			t.Fatalf("chunk %d has %d bytes", i, len(c))
		}
	}
	avg := len(data) / len(cs)
	if avg < Avg/2 || avg > Avg*2 {
		t.Fatalf("average chunk %d bytes, want about %d", avg, Avg)
	}
}

// TestInsertionMovesFewCuts: bytes inserted in the middle of a stream
// leave the chunks away from the insertion as they were.
func TestInsertionMovesFewCuts(t *testing.T) {
	tab := NewTable([]byte("seed"))
	data := random(4<<20, 2)
	edited := append(append(bytes.Clone(data[:2<<20]), []byte("a new row, 33 bytes long, inserted")...), data[2<<20:]...)
	before := map[string]bool{}
	for _, c := range chunks(t, tab, data, bytes.NewReader(data)) {
		before[string(c)] = true
	}
	after := chunks(t, tab, edited, bytes.NewReader(edited))
	fresh := 0
	for _, c := range after {
		if !before[string(c)] {
			fresh++
		}
	}
	if fresh > 3 {
		t.Fatalf("%d of %d chunks are new after one insertion", fresh, len(after))
	}
}

func TestSeedChangesCuts(t *testing.T) {
	data := random(1<<20, 3)
	a := chunks(t, NewTable([]byte("one")), data, bytes.NewReader(data))
	b := chunks(t, NewTable([]byte("two")), data, bytes.NewReader(data))
	if len(a) == len(b) && len(a[0]) == len(b[0]) && len(a[1]) == len(b[1]) {
		t.Fatal("two seeds cut the same stream at the same places")
	}
}

func TestEmptyAndShort(t *testing.T) {
	tab := NewTable(nil)
	if cs := chunks(t, tab, nil, bytes.NewReader(nil)); len(cs) != 0 {
		t.Fatalf("empty stream gave %d chunks", len(cs))
	}
	short := []byte("short")
	if cs := chunks(t, tab, short, bytes.NewReader(short)); len(cs) != 1 {
		t.Fatalf("short stream gave %d chunks", len(cs))
	}
}

func TestResetCutsLikeNew(t *testing.T) {
	tab := NewTable([]byte("seed"))
	a, b := random(1<<20, 4), random(300<<10, 5)
	c := New(tab, bytes.NewReader(a))
	for {
		if _, err := c.Next(); err != nil {
			break
		}
	}
	c.Reset(bytes.NewReader(b))
	var got [][]byte
	for {
		ch, err := c.Next()
		if err != nil {
			break
		}
		got = append(got, bytes.Clone(ch))
	}
	want := chunks(t, tab, b, bytes.NewReader(b))
	if len(got) != len(want) || !bytes.Equal(bytes.Join(got, nil), b) {
		t.Fatalf("after Reset: %d chunks, a fresh chunker cuts %d", len(got), len(want))
	}
}
