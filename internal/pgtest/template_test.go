package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestClustersFromTemplateAreDistinct checks what a copy of the template must be to stand in for
// initdb: a cluster of its own, with a system identifier no other cluster has, which the server
// itself reads (it refuses WAL whose identifier differs from pg_control's), over the catalog
// initdb made, with the checksums option of its template.
func TestClustersFromTemplateAreDistinct(t *testing.T) {
	t.Parallel()
	templates.mu.Lock()
	root := templates.root
	templates.mu.Unlock()
	if root == "" {
		t.Fatal("no template directory: RunMain should have made one")
	}
	if parent := os.Getenv(envTemplateDir); parent != "" && filepath.Dir(root) != parent {
		t.Errorf("templates in %s, want them in the root parent's %s, which it removes after a crash", root, parent)
	}
	seen := map[string]string{}
	for i, checksums := range []bool{false, true, false, true} {
		c := Start(t, Options{Checksums: checksums, Conf: map[string]string{"work_mem": "5MB"}})
		id := c.Psql(t, "postgres", "select system_identifier from pg_control_system()")
		control, err := readSystemID(c.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		if id != strconv.FormatUint(control, 10) {
			t.Errorf("cluster %d: server says system identifier %s, pg_control %d", i, id, control)
		}
		if other, ok := seen[id]; ok {
			t.Fatalf("clusters %s and %s share system identifier %s", other, c.DataDir, id)
		}
		seen[id] = c.DataDir
		want := map[bool]string{true: "on", false: "off"}[checksums]
		for setting, want := range map[string]string{
			"data_checksums": want, "work_mem": "5MB", "port": strconv.Itoa(c.Port), "unix_socket_directories": c.SocketDir,
		} {
			if got := c.Psql(t, "postgres", "show "+setting); got != want {
				t.Errorf("cluster %d: %s = %q, want %q", i, setting, got, want)
			}
		}
		// The WAL the server writes after a segment switch carries the new identifier too.
		c.Psql(t, "postgres", "select pg_switch_wal(); create table t as select 1")
		c.Restart(t)
		if got := c.Psql(t, "postgres", "select count(*) from t"); got != "1" {
			t.Errorf("cluster %d: rows after restart = %s", i, got)
		}
	}
	tpls, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(tpls) != 2 {
		t.Errorf("template directory holds %d entries, want one template per checksums option", len(tpls))
	}
	for _, e := range tpls {
		// A template is initdb's output, never started: no server wrote into it.
		if _, err := os.Stat(filepath.Join(root, e.Name(), "postmaster.opts")); err == nil {
			t.Errorf("template %s was started", e.Name())
		}
		conf, err := os.ReadFile(filepath.Join(root, e.Name(), "postgresql.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(conf), initConfMarker) {
			t.Errorf("template %s holds the port and socket of a server", e.Name())
		}
	}
}

func TestSetSystemIDRefusesForeignFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, controlPath), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	// All zeros: the CRC of the first 16 bytes is not zero, nor of any longer prefix.
	if err := setSystemID(dir, 0, 1); err == nil || !strings.Contains(err.Error(), "no valid CRC") {
		t.Fatalf("setSystemID on a zeroed pg_control: err = %v, want no valid CRC", err)
	}
}

func TestNewSystemIDIncreases(t *testing.T) {
	t.Parallel()
	prev := newSystemID()
	for range 1000 {
		id := newSystemID()
		if id <= prev {
			t.Fatalf("system identifier %d after %d", id, prev)
		}
		prev = id
	}
}
