package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
)

// TestInfoAndUnreachableTargets: info reports the window a restore can
// reach, agreeing with snapshots and status and with restores to its two
// ends; targets outside it are refused before anything is written.
func TestInfoAndUnreachableTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.sql("create table ledger (id int primary key)")
	e.sql("insert into ledger select g from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into ledger select g from generate_series(1001, 2000) g")
	e.mustRun("restore-point", "db", "after-2000")
	e.sql("insert into ledger select g from generate_series(2001, 3000) g")
	e.switchAndWait()

	var infos []app.AssetInfo
	if err := json.Unmarshal([]byte(e.mustRun("info", "db", "--json")), &infos); err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 || len(infos[0].Repositories) != 1 {
		t.Fatalf("info: %+v", infos)
	}
	ri := infos[0].Repositories[0]
	snaps := e.snapshots()
	var status []app.StatusRow
	if err := json.Unmarshal([]byte(e.mustRun("status", "db", "--json")), &status); err != nil {
		t.Fatal(err)
	}
	if len(ri.Snapshots) != len(snaps) || ri.Snapshots[0].ID != snaps[0].ID || ri.Status.LastSnapshot != status[0].LastSnapshot ||
		ri.Status.NewestWAL != status[0].NewestWAL {
		t.Fatalf("info disagrees with snapshots and status:\ninfo %+v\nsnapshots %+v\nstatus %+v", ri, snaps, status)
	}
	if len(ri.RestorePoints) != 1 || ri.RestorePoints[0].Name != "after-2000" {
		t.Fatalf("restore points: %+v", ri.RestorePoints)
	}
	if len(ri.Windows) != 1 {
		t.Fatalf("windows: %+v", ri.Windows)
	}
	w := ri.Windows[0]
	if !w.LatestExact || w.EarliestSnapshot != snaps[0].ID || !w.LatestTime.After(w.EarliestTime) {
		t.Fatalf("window: %+v", w)
	}
	if out := e.mustRun("info", "db"); !strings.Contains(out, "timeline 1: restorable from") || !strings.Contains(out, `restore point "after-2000"`) {
		t.Fatalf("info:\n%s", out)
	}
	if out := e.mustRun("restore-point", "--list", "db"); !strings.Contains(out, "after-2000") {
		t.Fatalf("restore-point --list:\n%s", out)
	}

	// Outside the window: refused before anything is written.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--time", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "is not before the newest commit that can be restored"},
		{[]string{"--lsn", "FF/0"}, "lies beyond the archived WAL"},
		{[]string{"--xid", "4000000000"}, "is newer than any transaction"},
		{[]string{"--name", "never-made"}, `restore point "never-made" was never recorded for db`},
	} {
		dir := filepath.Join(t.TempDir(), "restored")
		r := e.run(append([]string{"restore", "db", "--to", dir}, tc.args...)...)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("restore %v: exit %d, want one line with %q:\n%s", tc.args, r.code, tc.want, r.stderr)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("restore %v left %s behind (%v)", tc.args, dir, err)
		}
	}

	// Its two ends restore: the earliest moment holds what the backup
	// held, the latest commit everything.
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"earliest", []string{"--time", w.EarliestTime.Format(time.RFC3339Nano)}, "1000"},
		{"latest", []string{"--lsn", w.LatestPosition}, "3000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := e.forTest(t).restoreAndStart(tc.args...)
			if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != tc.want {
				t.Fatalf("restored %s rows, want %s", got, tc.want)
			}
		})
	}
}
