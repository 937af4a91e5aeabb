package postgres

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// forgeSnapshot saves a PostgreSQL snapshot of asset "pg" with the given
// tree and tablespaces, and the one WAL segment it needs, through the
// repository's API: what a holder of the key could write.
func forgeSnapshot(t *testing.T, r *repo.Repository, ts []TablespaceInfo, entries []repotest.Entry) *repo.Snapshot {
	t.Helper()
	const segSize = 16 << 20
	info := SnapshotInfo{SystemID: "7000000000000000001", PGVersion: 150000, Timeline: 1, StartLSN: 0x1000028, StopLSN: 0x1000100,
		WALSegmentSize: segSize, StopTime: time.Now().UTC(), BackupLabel: "START WAL LOCATION: 0/1000028\n", Tablespaces: ts}
	extra, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	seg := WALName{Kind: WALSegment, TLI: 1, SegNo: 1, SegSize: segSize}
	if _, err := r.PutNamed(t.Context(), walArea, "pg", walRel(seg), []byte("segment"), repo.CodecZstd); err != nil {
		t.Fatal(err)
	}
	return repotest.SaveTree(t, r, &repo.Snapshot{Asset: "pg", Kind: Kind, Type: "full", Extra: extra}, entries)
}

func dirNode(p string) repotest.Entry {
	return repotest.Entry{Node: repo.Node{Path: p, Type: repo.NodeDir, Mode: 0o700, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}}
}

func fileNode(p, data string) repotest.Entry {
	return repotest.Entry{Node: repo.Node{Path: p, Type: repo.NodeFile, Mode: 0o600, UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}, Data: []byte(data)}
}

func linkNode(p, to string) repotest.Entry {
	return repotest.Entry{Node: repo.Node{Path: p, Type: repo.NodeSymlink, Mode: 0o777, Link: to}}
}

// TestRestoreRefusesForgedLinks restores PostgreSQL snapshots forged with
// links that lead out of the data directory: refused as corrupt, and
// nothing is written (or read) where they point.
func TestRestoreRefusesForgedLinks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		tree  func(elsewhere string) []repotest.Entry
		where string // in the message
	}{
		{"a directory that is a link", func(e string) []repotest.Entry {
			return []repotest.Entry{dirNode("global"), linkNode("base", e), dirNode("base/1"), fileNode("base/1/1259", "pwned")}
		}, "below the symlink base"},
		{"a tablespace link the snapshot does not record", func(e string) []repotest.Entry {
			return []repotest.Entry{dirNode("global"), dirNode("pg_tblspc"), linkNode("pg_tblspc/99999", e),
				fileNode("pg_tblspc/99999/pwned", "pwned")}
		}, "below the symlink pg_tblspc/99999"},
		{"postgresql.auto.conf a link", func(e string) []repotest.Entry {
			return []repotest.Entry{dirNode("global"), linkNode("postgresql.auto.conf", filepath.Join(e, "secret"))}
		}, "postgresql.auto.conf is not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := repotest.New(t)
			elsewhere := t.TempDir()
			secret := filepath.Join(elsewhere, "secret")
			if err := os.WriteFile(secret, []byte("password = hunter2\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			snap := forgeSnapshot(t, r, nil, tc.tree(elsewhere))
			dir := filepath.Join(t.TempDir(), "data")
			_, err := Restore(t.Context(), r, RestoreOptions{Asset: "pg", Dir: dir, Snapshot: snap.ID.String(), RestoreCommand: "false", UID: -1, GID: -1})
			if !errors.Is(err, repo.ErrCorrupt) || !strings.Contains(err.Error(), tc.where) {
				t.Fatalf("restore of a forged snapshot: %v", err)
			}
			names, _ := os.ReadDir(elsewhere)
			if len(names) != 1 {
				t.Errorf("the refused restore wrote into %s: %v", elsewhere, names)
			}
			if data, _ := os.ReadFile(secret); string(data) != "password = hunter2\n" {
				t.Errorf("secret changed: %q", data)
			}
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if data, _ := os.ReadFile(p); strings.Contains(string(data), "hunter2") {
						t.Errorf("%s holds what the forged link pointed to", p)
					}
				}
				return nil
			})
		})
	}
}

// TestRestoreTablespaceIsTheOnlyFollowedLink restores a snapshot with a
// recorded tablespace, mapped elsewhere: its link points there and its
// files are written there, confined to it.
func TestRestoreTablespaceIsTheOnlyFollowedLink(t *testing.T) {
	t.Parallel()
	r := repotest.New(t)
	snap := forgeSnapshot(t, r, []TablespaceInfo{{OID: 16400, Name: "fast", Location: "/srv/nowhere"}}, []repotest.Entry{
		dirNode("global"), fileNode("global/pg_control", "control"), dirNode("pg_tblspc"), linkNode("pg_tblspc/16400", "/srv/nowhere"),
		dirNode("pg_tblspc/16400/PG_15_202209061"), dirNode("pg_tblspc/16400/PG_15_202209061/5"),
		fileNode("pg_tblspc/16400/PG_15_202209061/5/16401", "relation"),
	})
	base := t.TempDir()
	dir, ts := filepath.Join(base, "data"), filepath.Join(base, "fast")
	if _, err := Restore(t.Context(), r, RestoreOptions{Asset: "pg", Dir: dir, Snapshot: snap.ID.String(), RestoreCommand: "false",
		Tablespaces: map[string]string{"fast": ts}, UID: -1, GID: -1}); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(filepath.Join(dir, "pg_tblspc/16400")); err != nil || l != ts {
		t.Errorf("tablespace link: %q, %v; want %s", l, err, ts)
	}
	if data, err := os.ReadFile(filepath.Join(ts, "PG_15_202209061/5/16401")); err != nil || string(data) != "relation" {
		t.Errorf("tablespace file: %q, %v", data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "recovery.signal")); err != nil {
		t.Errorf("recovery.signal: %v", err)
	}
}
