package postgres

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

func TestExcluderShouldSkip(t *testing.T) {
	type want struct{ skip, keepEmpty bool }
	keep, skip, empty := want{false, false}, want{true, false}, want{true, true}
	tests := []struct {
		path  string
		isDir bool
		want  want
	}{
		{"", true, keep},
		{".", true, keep},
		{"PG_VERSION", false, keep},
		{"postgresql.conf", false, keep},
		{"postgresql.auto.conf", false, keep},
		{"pg_hba.conf", false, keep},
		{"current_logfiles", false, keep},
		{"log", true, keep},
		{"log/postgresql-2024-01-01.log", false, keep},
		{"global/pg_control", false, keep},
		{"global/1260", false, keep},
		{"base", true, keep},
		{"base/5", true, keep},
		{"base/5/16384", false, keep},
		{"base/5/16384_init", false, keep},
		{"base/5/pg_filenode.map", false, keep},
		{"pg_xact", true, keep},
		{"pg_xact/0000", false, keep},
		{"pg_multixact/offsets/0000", false, keep},
		{"pg_tblspc", true, keep},
		{"pg_tblspc/16390", true, keep},
		{"pg_tblspc/16390/PG_15_202209061/5/16391", false, keep},
		{"pg_stat/pgstat.stat", false, keep},
		{"pg_logical/replorigin_checkpoint", false, keep},
		{"standby.signal", false, skip},
		{"recovery.signal", false, skip},
		{"postmaster.pid/x", false, keep}, // only the top-level file is special
		{"base/5/backup_label", false, keep},

		{"pg_wal", true, keep},
		{"pg_wal/000000010000000000000001", false, skip},
		{"pg_wal/00000002.history", false, skip},
		{"pg_wal/archive_status", true, empty},
		{"pg_wal/archive_status/000000010000000000000001.done", false, skip},
		{"pg_wal/summaries", true, empty},
		{"pg_wal/xlogtemp.123", false, skip},
		{"pg_wal/somedir", true, skip},

		{"pg_replslot", true, empty},
		{"pg_replslot/slot1", true, skip},
		{"pg_replslot/slot1/state", false, skip},
		{"pg_dynshmem", true, empty},
		{"pg_notify", true, empty},
		{"pg_notify/0000", false, skip},
		{"pg_serial", true, empty},
		{"pg_snapshots", true, empty},
		{"pg_stat_tmp", true, empty},
		{"pg_stat_tmp/pgss_query_texts.stat", false, skip},
		{"pg_subtrans", true, empty},
		{"pg_subtrans/0000", false, skip},
		{"pg_replslot", false, keep}, // a file of that name is no directory to empty

		{"postmaster.pid", false, skip},
		{"postmaster.opts", false, skip},
		{"backup_label", false, skip},
		{"tablespace_map", false, skip},
		{"backup_manifest", false, skip},
		{"postgresql.auto.conf.tmp", false, skip},
		{"current_logfiles.tmp", false, skip},

		{"global/pg_internal.init", false, skip},
		{"base/5/pg_internal.init", false, skip},
		{"base/5/pg_internal.init.12345", false, skip},
		{"base/pgsql_tmp", true, skip},
		{"base/pgsql_tmp/pgsql_tmp123.0", false, skip},
		{"pg_tblspc/16390/PG_15_202209061/pgsql_tmp", true, skip},
		{"base/5/t3_16384", false, skip},
		{"base/5/t3_16384_fsm", false, skip},
		{"base/5/t12_16384.1", false, skip},
		{"pg_tblspc/16390/PG_15_202209061/5/t3_16391", false, skip},
		{"base/5/t3_", false, keep},
		{"base/5/tx_16384", false, keep},
		{"t3_16384", false, keep},

		// Backslashes or doubled slashes are cleaned before matching.
		{"/pg_wal//000000010000000000000001", false, skip},
		{"./postmaster.pid", false, skip},
	}
	e := NewExcluder()
	for _, tt := range tests {
		s, k := e.ShouldSkip(tt.path, tt.isDir)
		if (want{s, k}) != tt.want {
			t.Errorf("ShouldSkip(%q, dir=%v) = skip %v, keepEmpty %v; want %+v", tt.path, tt.isDir, s, k, tt.want)
		}
	}
}

func TestUnloggedRelations(t *testing.T) {
	files := []string{
		"base/5/16384", "base/5/16384.1", "base/5/16384_fsm", "base/5/16384_vm", "base/5/16384_init",
		"base/5/16390", "base/5/16390_fsm",
		"base/6/16384", "base/6/16384_fsm", // same relfilenode in another database: logged
		"base/5/PG_VERSION", "base/5/pg_filenode.map",
		"pg_tblspc/7/PG_15_202209061/5/20000", "pg_tblspc/7/PG_15_202209061/5/20000_init",
	}
	got := UnloggedRelations(files)
	want := []string{"base/5/16384", "base/5/16384.1", "base/5/16384_fsm", "base/5/16384_vm",
		"pg_tblspc/7/PG_15_202209061/5/20000"}
	var keys []string
	for k, v := range got {
		if v {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("UnloggedRelations = %q, want %q", keys, want)
	}
	// Bare names from one directory listing work the same.
	got = UnloggedRelations([]string{"1", "1_init", "2", "2_vm"})
	if len(got) != 1 || !got["1"] {
		t.Errorf("UnloggedRelations of bare names = %v", got)
	}
	if got := UnloggedRelations(nil); len(got) != 0 {
		t.Errorf("UnloggedRelations(nil) = %v", got)
	}
}

// TestExcluderRealCluster checks the rules against a live data directory:
// the unlogged table's main fork is dropped and its init fork kept, the
// logged table is kept, and the running server's own files are left out.
func TestExcluderRealCluster(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{})
	c.Psql(t, "postgres", `
create unlogged table u as select g from generate_series(1, 1000) g;
create table l as select g from generate_series(1, 1000) g;
vacuum u, l;
checkpoint;`)
	uPath := c.Psql(t, "postgres", "select pg_relation_filepath('u')")
	lPath := c.Psql(t, "postgres", "select pg_relation_filepath('l')")
	dbDir := path.Dir(uPath)
	entries, err := os.ReadDir(filepath.Join(c.DataDir, dbDir))
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		files = append(files, dbDir+"/"+e.Name())
	}
	if !slices.Contains(files, uPath+"_init") {
		t.Fatalf("no init fork %s_init among %d files", uPath, len(files))
	}
	drop := UnloggedRelations(files)
	for _, f := range files {
		isU := f == uPath || strings.HasPrefix(f, uPath+"_") && f != uPath+"_init"
		if drop[f] != isU {
			t.Errorf("drop[%s] = %v, want %v", f, drop[f], isU)
		}
	}
	if !drop[uPath] || drop[lPath] || drop[uPath+"_init"] {
		t.Errorf("drop main fork of u=%v, of l=%v, init of u=%v", drop[uPath], drop[lPath], drop[uPath+"_init"])
	}

	e := NewExcluder()
	for _, f := range []string{"postmaster.pid", "postmaster.opts"} {
		if _, err := os.Stat(filepath.Join(c.DataDir, f)); err != nil {
			t.Fatalf("running server has no %s: %v", f, err)
		}
		if skip, _ := e.ShouldSkip(f, false); !skip {
			t.Errorf("%s not skipped", f)
		}
	}
	walEntries, err := os.ReadDir(filepath.Join(c.DataDir, "pg_wal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range walEntries {
		skip, keepEmpty := e.ShouldSkip("pg_wal/"+w.Name(), w.IsDir())
		if !skip || keepEmpty != (w.Name() == "archive_status") {
			t.Errorf("pg_wal/%s: skip %v keepEmpty %v", w.Name(), skip, keepEmpty)
		}
	}
}
