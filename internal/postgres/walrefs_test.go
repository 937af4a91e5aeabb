package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// walOf returns the WAL of a running cluster, straight from pg_wal, and
// its segment size.
func walOf(t *testing.T, c *pgtest.Cluster) (walSegmentSource, uint64) {
	t.Helper()
	segSize, err := strconv.ParseUint(c.Psql(t, "postgres", "select setting from pg_settings where name = 'wal_segment_size'"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return func(_ context.Context, segNo uint64) ([]byte, error) {
		return os.ReadFile(filepath.Join(c.DataDir, "pg_wal", SegmentName(1, segNo, segSize)))
	}, segSize
}

func currentLSN(t *testing.T, c *pgtest.Cluster) lifeboat.LSN {
	t.Helper()
	l, err := lifeboat.ParseLSN(c.Psql(t, "postgres", "select pg_current_wal_lsn()"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestScanWALRefsFindsEveryWrittenBlock writes a table, an update across
// it and a truncation into real WAL, and checks the reader sees each
// block and each smgr record; then that a damaged record is refused
// rather than skipped.
func TestScanWALRefsFindsEveryWrittenBlock(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	src, segSize := walOf(t, c)
	c.Psql(t, "postgres", "create table before_range (id int); insert into before_range select generate_series(1, 100)")
	start := currentLSN(t, c)
	// Records larger than a WAL page (a 20 kB toasted value compresses,
	// so random text) cross pages; the switch skips a segment's padding.
	c.Psql(t, "postgres", `create table w (id int, v text);
		insert into w select g, repeat(md5(g::text), 6) from generate_series(1, 3000) g;
		update before_range set id = id + 1;
		select pg_switch_wal();
		create table big (v text); alter table big alter v set storage external;
		insert into big select string_agg(md5(random()::text), '') from generate_series(1, 700);
		delete from w where id > 1500; vacuum w`)
	end := currentLSN(t, c)
	refs, err := ScanWALRefs(context.Background(), src, segSize, start, end)
	if err != nil {
		t.Fatal(err)
	}
	if refs.Whole != "" {
		t.Fatalf("the WAL vouches for nothing: %s", refs.Whole)
	}
	key := func(table string) RelKey {
		k, fork, _, ok := RelKeyOf(c.Psql(t, "postgres", "select pg_relation_filepath('"+table+"')"))
		if !ok || fork != 0 {
			t.Fatalf("%s: not a main fork path", table)
		}
		return k
	}
	// w was larger before vacuum truncated it: every block it had is
	// referenced, checked up to the blocks inserted.
	w := key("w")
	pages, _ := strconv.Atoi(c.Psql(t, "postgres", "select pg_relation_size('w') / 8192"))
	if pages == 0 {
		t.Fatal("w is empty")
	}
	for b := 0; b < pages; b++ {
		if !refs.Referenced(w, 0, uint32(b)) {
			t.Fatalf("block %d of w (%d pages) not referenced", b, pages)
		}
	}
	if ok, _ := refs.Vouches(w, 0); ok {
		t.Fatal("w was created and truncated in the range, yet the WAL vouches for it")
	}
	notes := strings.Join(refs.Notes, "; ")
	if !strings.Contains(notes, strconv.Itoa(int(w.Rel))+" created") || !strings.Contains(notes, strconv.Itoa(int(w.Rel))+" truncated") {
		t.Fatalf("notes %q lack the creation and the truncation of %d", notes, w.Rel)
	}
	br := key("before_range")
	if ok, why := refs.Vouches(br, 0); !ok || !refs.Referenced(br, 0, 0) {
		t.Fatalf("before_range: vouched %v (%s), block 0 referenced %v", ok, why, refs.Referenced(br, 0, 0))
	}
	if ok, _ := refs.Vouches(br, 2); ok {
		t.Fatal("the WAL vouches for a visibility map fork")
	}
	if refs.Records < 100 {
		t.Fatalf("%d records read", refs.Records)
	}

	// A flipped byte in the first record after start fails the CRC.
	damaged := func(ctx context.Context, segNo uint64) ([]byte, error) {
		data, err := src(ctx, segNo)
		if err == nil && segNo == SegmentForLSN(start, segSize) {
			data[uint64(start)%segSize+30] ^= 0xFF
		}
		return data, err
	}
	if _, err := ScanWALRefs(context.Background(), damaged, segSize, start, end); !errors.Is(err, errWALFormat) {
		t.Fatalf("damaged WAL: err %v, want a format error", err)
	}
	// Missing WAL is an error too, never an empty set.
	missing := func(context.Context, uint64) ([]byte, error) { return nil, os.ErrNotExist }
	if _, err := ScanWALRefs(context.Background(), missing, segSize, start, end); err == nil {
		t.Fatal("no WAL at all read without an error")
	}
}

func TestRelKeyOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path string
		want RelKey
		fork uint8
		seg  uint32
		ok   bool
	}{
		{"base/5/16384", RelKey{1663, 5, 16384}, 0, 0, true},
		{"base/5/16384_vm", RelKey{1663, 5, 16384}, 2, 0, true},
		{"base/5/16384_fsm.3", RelKey{1663, 5, 16384}, 1, 3, true},
		{"base/5/16384_init", RelKey{1663, 5, 16384}, 3, 0, true},
		{"global/1262", RelKey{1664, 0, 1262}, 0, 0, true},
		{"pg_tblspc/16400/PG_15_202209061/16401/16402.1", RelKey{16400, 16401, 16402}, 0, 1, true},
		{"base/5/pg_filenode.map", RelKey{}, 0, 0, false},
		{"base/5/t3_16384", RelKey{}, 0, 0, false},
		{"pg_xact/0000", RelKey{}, 0, 0, false},
	} {
		k, fork, seg, ok := RelKeyOf(tc.path)
		if ok != tc.ok || ok && (k != tc.want || fork != tc.fork || seg != tc.seg) {
			t.Errorf("RelKeyOf(%q) = %v %d %d %v, want %v %d %d %v", tc.path, k, fork, seg, ok, tc.want, tc.fork, tc.seg, tc.ok)
		}
	}
}
