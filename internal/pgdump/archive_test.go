package pgdump

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// archiveBuilder writes the custom format as pg_dump does (see archive.go),
// so the checker can be tested on every layout it knows without a server;
// testdata holds real pg_dump output as well.
type archiveBuilder struct {
	bytes.Buffer
	minor int
}

func (b *archiveBuilder) int(v int64) {
	sign := byte(0)
	if v < 0 {
		sign, v = 1, -v
	}
	b.WriteByte(sign)
	for i := 0; i < 4; i++ {
		b.WriteByte(byte(v >> (8 * i)))
	}
}

func (b *archiveBuilder) str(s string) { b.int(int64(len(s))); b.WriteString(s) }
func (b *archiveBuilder) null()        { b.int(-1) }

type testEntry struct {
	id     int64
	data   [][]byte // chunks; nil: no data
	blobs  bool     // a large-object block (data holds one blob each)
	noData bool
}

func buildArchive(minor int, entries []testEntry) []byte {
	b := &archiveBuilder{minor: minor}
	b.WriteString("PGDMP")
	b.Write([]byte{1, byte(minor), 0, 4, 8, formatCustom})
	if minor >= 15 {
		b.WriteByte(0)
	} else {
		b.int(0)
	}
	for _, v := range []int64{1, 2, 3, 4, 5, 124, 0} {
		b.int(v)
	}
	b.str("app")
	b.str("15.13")
	b.str("15.13")
	b.int(int64(len(entries)))
	for _, e := range entries {
		b.int(e.id)
		b.int(0)
		b.str("1259")
		b.str("16384")
		b.str("t")
		b.str("TABLE DATA")
		b.int(3)
		b.str("")
		b.str("")
		b.str("COPY t (a) FROM stdin;\n")
		b.str("public")
		b.null()
		if minor >= 14 {
			b.str("heap")
		}
		if minor >= 16 {
			b.int('r')
		}
		b.str("postgres")
		b.str("false")
		b.str("1")
		b.str("2")
		b.null()
		if e.noData {
			b.WriteByte(offsetNoData)
		} else {
			b.WriteByte(offsetPosNotSet)
		}
		b.Write(make([]byte, 8))
	}
	for _, e := range entries {
		if e.noData {
			continue
		}
		if e.blobs {
			b.WriteByte(blockBlobs)
			b.int(e.id)
			for i, c := range e.data {
				b.int(int64(16400 + i))
				b.int(int64(len(c)))
				b.Write(c)
				b.int(0)
			}
			b.int(0)
			continue
		}
		b.WriteByte(blockData)
		b.int(e.id)
		for _, c := range e.data {
			b.int(int64(len(c)))
			b.Write(c)
		}
		b.int(0)
	}
	return b.Bytes()
}

func sampleEntries() []testEntry {
	return []testEntry{
		{id: 1, noData: true},
		{id: 7, data: [][]byte{[]byte("1\talpha\n"), []byte("2\tbeta\n")}},
		{id: 8, data: nil},
		{id: 9, blobs: true, data: [][]byte{[]byte("large object")}},
	}
}

func TestCheckArchiveLayouts(t *testing.T) {
	for _, minor := range []int{12, 14, 15, 16} {
		data := buildArchive(minor, sampleEntries())
		a, err := checkArchive(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("1.%d: %v", minor, err)
		}
		if !a.Complete || a.Entries != 4 || a.DataBlocks != 3 || a.Database != "app" || a.DumpVersion != "15.13" || a.Bytes != int64(len(data)) ||
			a.TOCEnd <= 0 || a.TOCEnd+a.DataBytes != a.Bytes || data[a.TOCEnd] != blockData {
			t.Fatalf("1.%d: %+v", minor, a)
		}
	}
}

// TestCheckArchiveRefusesEveryTruncation: pg_dump killed at any byte
// leaves a stream the checker refuses.
func TestCheckArchiveRefusesEveryTruncation(t *testing.T) {
	data := buildArchive(14, sampleEntries())
	for n := 0; n < len(data); n++ {
		_, err := checkArchive(bytes.NewReader(data[:n]))
		if !errors.Is(err, ErrIncomplete) {
			t.Fatalf("cut at %d of %d: %v", n, len(data), err)
		}
	}
}

func TestCheckArchiveRefusesDamage(t *testing.T) {
	good := buildArchive(14, sampleEntries())
	cases := map[string][]byte{
		"trailing byte":  append(append([]byte{}, good...), 0),
		"not an archive": []byte("-- PostgreSQL database dump\n"),
		"wrong format":   func() []byte { d := append([]byte{}, good...); d[10] = 5; return d }(),
	}
	// A block of an entry the TOC does not list.
	other := buildArchive(14, []testEntry{{id: 7, data: [][]byte{[]byte("x")}}})
	cases["unexpected dump ID"] = bytes.Replace(other, []byte{blockData, 0, 7, 0, 0, 0}, []byte{blockData, 0, 6, 0, 0, 0}, 1)
	for name, data := range cases {
		if _, err := checkArchive(bytes.NewReader(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckArchiveNewerFormatChecksHeaderOnly(t *testing.T) {
	data := buildArchive(17, sampleEntries())
	a, err := checkArchive(bytes.NewReader(data))
	if err != nil || a.Complete || a.Version != "1.17" {
		t.Fatalf("1.17: %+v, %v", a, err)
	}
}

// TestCheckArchiveRealDump reads archives pg_dump 15 wrote (-Fc -Z0 to a
// pipe, as a backup runs it): testdata/small.dump holds a table with rows,
// an empty table, a sequence and a large object.
func TestCheckArchiveRealDump(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "small.dump"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := checkArchive(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Complete || a.Version != "1.14" || a.DataBlocks < 3 {
		t.Fatalf("%+v", a)
	}
	for _, n := range []int{len(data) - 1, len(data) - 5, len(data) / 2, 100} {
		if _, err := checkArchive(bytes.NewReader(data[:n])); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("cut at %d: %v", n, err)
		}
	}
}

func FuzzCheckArchive(f *testing.F) {
	f.Add(buildArchive(14, sampleEntries()))
	f.Add(buildArchive(16, sampleEntries()))
	if data, err := os.ReadFile(filepath.Join("testdata", "small.dump")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := checkArchive(bytes.NewReader(data))
		if err == nil && a.Complete && a.Bytes != int64(len(data)) {
			t.Fatalf("accepted %d of %d bytes", a.Bytes, len(data))
		}
	})
}
