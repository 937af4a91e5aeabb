package postgres

import (
	"encoding/binary"
	"slices"
	"testing"
)

func TestKnowsInvalidDatabases(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"15.3": false, "15.4": true, "15.13": true, "16.0": true, "17beta1": true,
		"14.8": false, "14.9": true, "11.21": true, "10.23": false, "x": false} {
		if got := knowsInvalidDatabases(v); got != want {
			t.Errorf("%s: %v, want %v", v, got, want)
		}
	}
}

func TestZeroedFiles(t *testing.T) {
	t.Parallel()
	z := zeroed([]uint32{16384})
	for p, want := range map[string]bool{
		"base/16384/1259": true, "base/16384/PG_VERSION": false, "base/16384/pg_filenode.map": false,
		"base/16385/1259": false, "base/16384": false, "global/1262": false,
		"pg_tblspc/16400/PG_15_202209061/16384/16500": true, "pg_tblspc/16400/PG_15_202209061/16385/16500": false,
	} {
		if got := z(p); got != want {
			t.Errorf("%s: zeroed %v, want %v", p, got, want)
		}
	}
}

// A pg_database page with two rows (one dead line pointer between them)
// reads back as their names and OIDs.
func TestParsePGDatabase(t *testing.T) {
	t.Parallel()
	page := make([]byte, 8192)
	rows := []struct {
		oid  uint32
		name string
	}{{1, "template1"}, {0, ""}, {16384, "app"}}
	upper := 8192
	for i, r := range rows {
		lp := 24 + 4*i
		if r.name == "" {
			continue // flags 0: unused
		}
		tup := make([]byte, 24+4+64+40)
		tup[22] = 24
		binary.LittleEndian.PutUint32(tup[24:], r.oid)
		copy(tup[28:], r.name)
		upper -= len(tup)
		copy(page[upper:], tup)
		binary.LittleEndian.PutUint32(page[lp:], uint32(upper)|1<<15|uint32(len(tup))<<17)
	}
	binary.LittleEndian.PutUint16(page[12:], uint16(24+4*len(rows)))
	got := parsePGDatabase(append(page, make([]byte, 8192)...), 8192)
	if len(got) != 2 || !slices.Equal(got["app"], []uint32{16384}) || !slices.Equal(got["template1"], []uint32{1}) {
		t.Fatalf("parsed %v", got)
	}
}
