package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// store is the repository as a put-only credential without the key sees
// it: it reads and creates objects, never overwrites or deletes.
type store struct {
	plant func(t *testing.T, name string, data []byte)
	read  func(t *testing.T, name string) []byte
}

func fileStore(dir string) store {
	return store{
		plant: func(t *testing.T, name string, data []byte) {
			t.Helper()
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatalf("plant %s: %v", name, err)
			}
			f.Write(data)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		},
		read: func(t *testing.T, name string) []byte {
			t.Helper()
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			return data
		},
	}
}

// nextSegment is the name of the WAL segment after seg (16 MiB segments).
func nextSegment(t *testing.T, seg string) string {
	t.Helper()
	log, err1 := strconv.ParseUint(seg[8:16], 16, 32)
	no, err2 := strconv.ParseUint(seg[16:], 16, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("segment name %q", seg)
	}
	if no++; no > 0xFF {
		log, no = log+1, 0
	}
	return fmt.Sprintf("%s%08X%08X", seg[:8], log, no)
}

func walObject(seg string) string { return "wal/db/" + seg[:8] + "/" + seg }

func hashName(area string, data []byte) string {
	h := sha256.Sum256(data)
	return area + "/" + hex.EncodeToString(h[:])
}

// TestPutOnlyAttacker: with only a put-only credential, someone plants
// junk, truncated, replayed and future-named objects in every area,
// including the cluster's identity before anything wrote it and the names
// of the next WAL segments before they are archived. Backups, archiving,
// restore (through wal-fetch), copy and a restore from the copy go on with
// the genuine data; verify and check name every planted object.
func TestPutOnlyAttacker(t *testing.T) {
	t.Parallel()
	t.Run("file", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, false)
		putOnlyAttack(t, e, fileStore(e.repo))
	})
	t.Run("minio", func(t *testing.T) {
		t.Parallel()
		// The repository is reached with the documented backup role, as
		// the attacker's credential is. (The keys are written into the
		// policy rather than read from the environment, so that the test
		// does not depend on what environment the server's archiver gets.)
		srv := s3test.Start(t)
		srv.CreateBucket(t, "attacked", false)
		srv.CreateUser(t, "lifeboat-backup", "backup-secret-1234", "lifeboat-backup", s3test.BackupRolePolicy("attacked"))
		e := startEnv(t, false, func(e *env) {
			e.repoURL = fmt.Sprintf("s3://attacked/db?endpoint=%s&region=%s&path_style=true", srv.Endpoint, srv.Region)
			e.repoCreds = "\n    access_key: lifeboat-backup\n    secret_key: backup-secret-1234"
		})
		c := srv.ClientAs(t, "lifeboat-backup", "backup-secret-1234")
		putOnlyAttack(t, e, store{
			plant: func(t *testing.T, name string, data []byte) {
				t.Helper()
				if _, err := c.PutObject(t.Context(), &s3api.PutObjectInput{Bucket: aws.String("attacked"), Key: aws.String("db/" + name),
					Body: bytes.NewReader(data), IfNoneMatch: aws.String("*")}); err != nil {
					t.Fatalf("plant %s: %v", name, err)
				}
			},
			read: func(t *testing.T, name string) []byte {
				t.Helper()
				out, err := c.GetObject(t.Context(), &s3api.GetObjectInput{Bucket: aws.String("attacked"), Key: aws.String("db/" + name)})
				if err != nil {
					t.Fatalf("read %s: %v", name, err)
				}
				defer out.Body.Close()
				data, err := io.ReadAll(out.Body)
				if err != nil {
					t.Fatal(err)
				}
				return data
			},
		})
	})
}

func putOnlyAttack(t *testing.T, e *env, s store) {
	// The identity, squatted before the first backup or segment writes it.
	planted := []string{"meta/db/identity"}
	s.plant(t, planted[0], []byte(`{"system_id":"1","wal_segment_size":16777216}`))
	e.sql("create table ledger (id int primary key, note text)")
	e.sql("insert into ledger select g, 'before' from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	snaps := e.snapshots()
	if len(snaps) != 1 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	genuineSnap := s.read(t, "snapshots/"+snaps[0].ID)
	// The next two segments' names: junk at one, the genuine last
	// archived segment replayed at the other.
	// (The backup waited for its last segment to be archived; the last
	// archived file may be its backup history file.)
	last := e.sql("select last_archived_wal from pg_stat_archiver")[:24]
	cur := nextSegment(t, last)
	next := nextSegment(t, cur)
	s.plant(t, walObject(cur), []byte("7 bytes"))
	s.plant(t, walObject(next), s.read(t, walObject(last)))
	planted = append(planted, walObject(cur), walObject(next))
	seven := []byte("garbage")
	for _, p := range []struct {
		name string
		data []byte
	}{
		{hashName("index", seven), seven},
		{"index/" + strings.Repeat("0", 64), genuineSnap}, // a genuine object under another name
		{hashName("snapshots", genuineSnap[:len(genuineSnap)/2]), genuineSnap[:len(genuineSnap)/2]},
		{"snapshots/" + strings.Repeat("f", 64), genuineSnap},
		{"marks/99999999999999999999-00000000", []byte{1}},
		{"locks/" + strings.Repeat("f", 32), []byte("held forever")},
	} {
		s.plant(t, p.name, p.data)
		planted = append(planted, p.name)
	}

	// Archiving goes on over the squatters, and so do backups.
	e.sql("insert into ledger select g, 'after' from generate_series(1001, 2000) g")
	e.switchAndWait()
	e.sql("insert into ledger select g, 'later' from generate_series(2001, 2500) g")
	e.switchAndWait()
	if failed := e.sql("select failed_count from pg_stat_archiver"); failed != "0" {
		t.Fatalf("the archiver failed %s times", failed)
	}
	e.mustRun("backup", "db")
	if n := len(e.snapshots()); n != 2 {
		t.Fatalf("%d snapshots after the second backup, want 2", n)
	}
	// A restore of the first backup replays the squatted segments
	// through wal-fetch.
	c := e.restoreAndStart("--snapshot", snaps[0].ID)
	if got := c.Psql(t, "postgres", "select count(*) from ledger"); got != "2500" {
		t.Fatalf("restored %s rows, want 2500", got)
	}

	// A copy gets the genuine objects only, and restores alone.
	copyDir := filepath.Join(e.dir, "dr")
	e.addFileCopy(copyDir)
	out := e.mustRun("copy")
	t.Logf("copy:\n%s", out)
	for _, p := range planted {
		if _, err := os.Stat(filepath.Join(copyDir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("copy spread %s: %v", p, err)
		}
		copied := !strings.HasPrefix(p, "marks/") && !strings.HasPrefix(p, "locks/") // copies hold neither
		if copied && !strings.Contains(out, "not copied: "+p+" in primary is not authentic") {
			t.Errorf("copy did not report %s", p)
		}
	}
	cc := e.restoreAndStart("--repository", "dr-copy", "--snapshot", snaps[0].ID)
	if got := cc.Psql(t, "postgres", "select count(*) from ledger"); got != "2500" {
		t.Fatalf("restored %s rows from the copy, want 2500", got)
	}

	// verify names every planted object; check alerts on what it meets.
	r := e.run("verify", "--read-data")
	if r.code != 1 {
		t.Fatalf("verify with planted objects: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, p := range planted {
		if !strings.Contains(r.stdout, "repository primary: "+p+" is not authentic") {
			t.Errorf("verify did not report %s:\n%s", p, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "repository dr-copy: ") && !strings.Contains(r.stdout, "repository dr-copy: 2 snapshots") {
		t.Errorf("verify of the copy:\n%s", r.stdout)
	}
	res := e.run("check", "--json")
	var rs []health.Result
	if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
		t.Fatalf("check --json: %v\n%s%s", err, res.stdout, res.stderr)
	}
	seen := map[string]health.Result{}
	for _, r := range rs {
		seen[r.Check+" "+r.Subject] = r
	}
	if a := seen["authentic primary"]; a.OK || !strings.Contains(a.Message, "not authentic") {
		t.Errorf("check of the primary: %+v", a)
	}
	if a := seen["authentic dr-copy"]; !a.OK {
		t.Errorf("check of the copy: %+v", a)
	}
}
