package postgres

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// samplePage returns an initialised-looking 8 kB page with its checksum set
// for block blkno.
func samplePage(blkno uint32) []byte {
	p := make([]byte, 8192)
	le := binary.LittleEndian
	le.PutUint32(p[0:], 0x16)       // pd_lsn.xlogid
	le.PutUint32(p[4:], 0xB374D848) // pd_lsn.xrecoff
	le.PutUint16(p[10:], 0x0004)    // pd_flags
	le.PutUint16(p[12:], 40)        // pd_lower
	le.PutUint16(p[14:], 8000)      // pd_upper
	le.PutUint16(p[16:], 8192)      // pd_special
	le.PutUint16(p[18:], 8192|4)    // pd_pagesize_version
	for i := 8000; i < 8192; i++ {
		p[i] = byte(i)
	}
	le.PutUint16(p[8:], PageChecksum(p, blkno))
	return p
}

func TestPageChecksum(t *testing.T) {
	p := samplePage(7)
	if ok, reason := VerifyPage(p, 7); !ok {
		t.Fatalf("VerifyPage of a freshly checksummed page: %s", reason)
	}
	sum := PageChecksum(p, 7)
	if sum == 0 {
		t.Fatal("checksum is 0; PostgreSQL never stores 0")
	}
	// The stored checksum is not part of the sum.
	q := bytes.Clone(p)
	binary.LittleEndian.PutUint16(q[8:], ^sum)
	if got := PageChecksum(q, 7); got != sum {
		t.Errorf("checksum depends on pd_checksum: %#x vs %#x", got, sum)
	}
	// The block number is mixed in, so a page moved elsewhere fails.
	if PageChecksum(p, 8) == sum {
		t.Error("checksum ignores the block number")
	}
	if ok, _ := VerifyPage(p, 8); ok {
		t.Error("page verified at the wrong block number")
	}
	// pd_flags shares a word with pd_checksum and is covered.
	q = bytes.Clone(p)
	q[10] ^= 1
	if ok, _ := VerifyPage(q, 7); ok {
		t.Error("change of pd_flags not detected")
	}
	for _, i := range []int{0, 12, 100, 4096, 8191} {
		q := bytes.Clone(p)
		q[i] ^= 0x10
		if ok, reason := VerifyPage(q, 7); ok || !strings.Contains(reason, "checksum mismatch in block 7") {
			t.Errorf("flip of byte %d: ok=%v reason=%q", i, ok, reason)
		}
	}
	// Other block sizes use the same algorithm over more or fewer rows.
	big := make([]byte, 32768)
	copy(big, p)
	binary.LittleEndian.PutUint16(big[8:], PageChecksum(big, 1))
	if ok, reason := VerifyPage(big, 1); !ok {
		t.Errorf("32 kB page: %s", reason)
	}
}

func TestVerifyPageNewAndMalformed(t *testing.T) {
	if ok, reason := VerifyPage(make([]byte, 8192), 3); !ok {
		t.Errorf("all-zero page rejected: %s", reason)
	}
	// pd_upper == 0 is PageIsNew: no checksum has been set yet.
	p := samplePage(3)
	binary.LittleEndian.PutUint16(p[14:], 0)
	binary.LittleEndian.PutUint16(p[8:], 0xBEEF)
	if ok, reason := VerifyPage(p, 3); !ok {
		t.Errorf("new page rejected: %s", reason)
	}
	for _, n := range []int{0, 23, 8191, 8200} {
		if ok, reason := VerifyPage(make([]byte, n), 0); ok || !strings.Contains(reason, "not a whole PostgreSQL block") {
			t.Errorf("page of %d bytes: ok=%v reason=%q", n, ok, reason)
		}
	}
}

func TestPageLSN(t *testing.T) {
	if got, want := PageLSN(samplePage(0)), lifeboat.LSN(0x16_B374D848); got != want {
		t.Errorf("PageLSN = %s, want %s", got, want)
	}
	if got := PageLSN(nil); got != 0 {
		t.Errorf("PageLSN(nil) = %s", got)
	}
}

func TestParseRelationFile(t *testing.T) {
	tests := []struct {
		path string
		want RelationFile
		ok   bool
	}{
		{"base/5/16384", RelationFile{16384, "", 0}, true},
		{"base/5/16384.1", RelationFile{16384, "", 1}, true},
		{"base/5/16384.12", RelationFile{16384, "", 12}, true},
		{"base/5/16384_fsm", RelationFile{16384, "fsm", 0}, true},
		{"base/5/16384_vm", RelationFile{16384, "vm", 0}, true},
		{"base/5/16384_init", RelationFile{16384, "init", 0}, true},
		{"base/5/16384_fsm.2", RelationFile{16384, "fsm", 2}, true},
		{"global/1260", RelationFile{1260, "", 0}, true},
		{"global/1260_vm", RelationFile{1260, "vm", 0}, true},
		{"pg_tblspc/16390/PG_15_202209061/5/16391", RelationFile{16391, "", 0}, true},
		{"pg_tblspc/16390/PG_15_202209061/5/16391_init.3", RelationFile{16391, "init", 3}, true},

		{"global/pg_control", RelationFile{}, false},
		{"global/pg_filenode.map", RelationFile{}, false},
		{"global/pg_internal.init", RelationFile{}, false},
		{"base/5/pg_filenode.map", RelationFile{}, false},
		{"base/5/pg_internal.init", RelationFile{}, false},
		{"base/5/PG_VERSION", RelationFile{}, false},
		{"base/5/t3_16384", RelationFile{}, false},
		{"base/5/t3_16384_fsm", RelationFile{}, false},
		{"base/pgsql_tmp/pgsql_tmp123.0", RelationFile{}, false},
		{"base/5/16384_foo", RelationFile{}, false},
		{"base/5/16384.", RelationFile{}, false},
		{"base/5/16384.0", RelationFile{}, false},
		{"base/5/016384", RelationFile{}, false},
		{"base/5/16384.1.2", RelationFile{}, false},
		{"base/5/99999999999", RelationFile{}, false},
		{"base/x/16384", RelationFile{}, false},
		{"base/16384", RelationFile{}, false},
		{"base/5/6/16384", RelationFile{}, false},
		{"16384", RelationFile{}, false},
		{"pg_xact/0000", RelationFile{}, false},
		{"pg_multixact/offsets/0000", RelationFile{}, false},
		{"pg_wal/000000010000000000000001", RelationFile{}, false},
		{"pg_tblspc/16390/PG_15_202209061/16391", RelationFile{}, false},
		{"pg_tblspc/16390/15_202209061/5/16391", RelationFile{}, false},
		{"pg_tblspc/16390/PG_15_202209061/5/pgsql_tmp/16391", RelationFile{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseRelationFile(tt.path)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseRelationFile(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
		}
		if IsRelationFile(tt.path) != tt.ok {
			t.Errorf("IsRelationFile(%q) = %v", tt.path, !tt.ok)
		}
	}
	if got := RelationBlockNumber(2, 5, DefaultRelationSegmentSize/8192); got != 2*131072+5 {
		t.Errorf("RelationBlockNumber = %d", got)
	}
}

// verifyRelationFiles checks every page of every relation file under
// dataDir and returns how many pages carried a checksum.
func verifyRelationFiles(t *testing.T, dataDir string) (checked int, failures []string) {
	t.Helper()
	const blockSize = 8192
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dataDir, p)
		if err != nil {
			return err
		}
		rf, ok := ParseRelationFile(filepath.ToSlash(rel))
		if !ok {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if len(data)%blockSize != 0 {
			t.Errorf("%s: size %d is not a multiple of the block size", rel, len(data))
		}
		for i := 0; i+blockSize <= len(data); i += blockSize {
			page := data[i : i+blockSize]
			blk := RelationBlockNumber(rf.Segment, uint32(i/blockSize), DefaultRelationSegmentSize/blockSize)
			if ok, reason := VerifyPage(page, blk); !ok {
				failures = append(failures, rel+": "+reason)
			}
			if binary.LittleEndian.Uint16(page[pdUpperOffset:]) != 0 {
				checked++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return checked, failures
}

// TestVerifyPageRealCluster checks the checksum implementation against
// pages written by PostgreSQL itself, and against pg_checksums.
func TestVerifyPageRealCluster(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Checksums: true})
	c.Psql(t, "postgres", `
create table big as select g, md5(g::text) as h from generate_series(1, 20000) g;
create index on big (h);
create unlogged table scratch as select g from generate_series(1, 1000) g;
vacuum analyze;
checkpoint;`)
	relPath := c.Psql(t, "postgres", "select pg_relation_filepath('big')")
	c.Stop(t)

	checked, failures := verifyRelationFiles(t, c.DataDir)
	if len(failures) > 0 {
		t.Fatalf("%d pages failed verification, first: %s", len(failures), failures[0])
	}
	// 20000 rows of ~70 bytes plus its index and the catalogs.
	if checked < 300 {
		t.Fatalf("only %d pages with checksums found; the walk missed relation files", checked)
	}
	runChecksums := func() error {
		return exec.Command(filepath.Join(c.BinDir, "pg_checksums"), "--check", "-D", c.DataDir).Run()
	}
	if err := runChecksums(); err != nil {
		t.Fatalf("pg_checksums --check on the untouched cluster: %v", err)
	}

	// Corrupt one byte in the middle of block 3 of the table.
	path := filepath.Join(c.DataDir, relPath)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 8192)
	if _, err := f.ReadAt(page, 3*8192); err != nil {
		t.Fatal(err)
	}
	if ok, reason := VerifyPage(page, 3); !ok {
		t.Fatalf("block 3 before corruption: %s", reason)
	}
	page[5000] ^= 0x01
	if _, err := f.WriteAt(page, 3*8192); err != nil {
		t.Fatal(err)
	}
	if ok, reason := VerifyPage(page, 3); ok || !strings.Contains(reason, "block 3") {
		t.Fatalf("corrupted block 3: ok=%v reason=%q", ok, reason)
	}
	_, failures = verifyRelationFiles(t, c.DataDir)
	if len(failures) != 1 || !strings.HasPrefix(failures[0], relPath+": ") {
		t.Fatalf("after corrupting one page: failures %q", failures)
	}
	var exitErr *exec.ExitError
	if err := runChecksums(); !errors.As(err, &exitErr) {
		t.Fatalf("pg_checksums did not report the corruption we found: %v", err)
	}
}

func FuzzVerifyPage(f *testing.F) {
	f.Add(samplePage(1)[:256], uint32(1))
	f.Add(make([]byte, 128), uint32(0))
	f.Fuzz(func(t *testing.T, page []byte, blkno uint32) {
		ok, reason := VerifyPage(page, blkno)
		if !ok && reason == "" {
			t.Fatal("failure without a reason")
		}
		if len(page) >= pageHeaderSize && len(page)%checksumRow == 0 {
			// Storing the computed checksum always makes a valid page.
			p := bytes.Clone(page)
			binary.LittleEndian.PutUint16(p[pdChecksumOffset:], PageChecksum(p, blkno))
			if ok, reason := VerifyPage(p, blkno); !ok {
				t.Fatalf("page with its own checksum fails: %s", reason)
			}
		}
	})
}

func FuzzParseRelationFile(f *testing.F) {
	for _, s := range []string{"base/5/16384", "base/5/16384_fsm.2", "global/1260_vm",
		"pg_tblspc/16390/PG_15_202209061/5/16391_init.3", "base/5/t3_16384", "base/5/016384"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		rf, ok := ParseRelationFile(p)
		if !ok {
			return
		}
		// An accepted name is canonical: printing it back gives the input.
		name := strconv.FormatUint(uint64(rf.RelFileNode), 10)
		if rf.Fork != "" {
			name += "_" + rf.Fork
		}
		if rf.Segment != 0 {
			name += "." + strconv.FormatUint(uint64(rf.Segment), 10)
		}
		if !strings.HasSuffix(p, "/"+name) || rf.RelFileNode == 0 {
			t.Fatalf("ParseRelationFile(%q) = %+v, which prints as %q", p, rf, name)
		}
	})
}
