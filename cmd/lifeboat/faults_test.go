package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// faultEnv is an env whose repository is in a bucket of a real MinIO that
// every lifeboat process (archive_command and restore_command included)
// reaches through a fault-injecting proxy. direct bypasses the proxy, to
// see what the store really holds.
type faultEnv struct {
	*env
	srv    *s3test.Server
	proxy  *s3test.FaultProxy
	direct *s3api.Client
}

const faultBucket = "backups"

// newFaultEnv starts the env. The secret is written into the policy rather
// than the environment so that the fault tests can run in parallel.
func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, faultBucket, false)
	proxy := s3test.NewFaultProxy(t, srv)
	e := startEnv(t, true, func(e *env) {
		e.repoURL = fmt.Sprintf("s3://%s/db?endpoint=%s&region=%s&path_style=true", faultBucket, proxy.Endpoint, srv.Region)
		e.repoCreds = fmt.Sprintf("\n    access_key: %s\n    secret_key: %s", srv.AccessKey, srv.SecretKey)
	})
	return &faultEnv{env: e, srv: srv, proxy: proxy, direct: srv.Client(t)}
}

// forTest is the env for a parallel subtest t: the same cluster and
// repository, reached through a fault proxy of its own (named in a copy of
// the policy), so that the faults planned for one subtest's requests are
// not dealt out to another's.
func (f *faultEnv) forTest(t *testing.T) *faultEnv {
	t.Helper()
	proxy := s3test.NewFaultProxy(t, f.srv)
	text, err := os.ReadFile(f.policy)
	if err != nil {
		t.Fatal(err)
	}
	via := bytes.Replace(text, []byte("endpoint="+f.proxy.Endpoint+"&"), []byte("endpoint="+proxy.Endpoint+"&"), 1)
	if bytes.Equal(via, text) {
		t.Fatalf("the policy does not name the proxy %s:\n%s", f.proxy.Endpoint, text)
	}
	e := f.env.forTest(t)
	e.policy = filepath.Join(t.TempDir(), "lifeboat.yaml")
	if err := os.WriteFile(e.policy, via, 0o600); err != nil {
		t.Fatal(err)
	}
	return &faultEnv{env: e, srv: f.srv, proxy: proxy, direct: f.direct}
}

// requests matches requests of method for objects of the repository whose
// names start with prefix ("" for every object, not the bucket itself).
func requests(method, prefix string) func(*http.Request) bool {
	path := "/" + faultBucket + "/db/" + prefix
	return func(r *http.Request) bool { return r.Method == method && strings.HasPrefix(r.URL.Path, path) }
}

// always is a fault that lasts longer than any command.
func always(f s3test.Fault) []s3test.Fault {
	out := make([]s3test.Fault, 1000)
	for i := range out {
		out[i] = f
	}
	return out
}

// injected returns how many faults the current plan has dealt out.
func (f *faultEnv) injected() int { return f.proxy.Injected() }

// objects lists the keys the store holds under the repository's prefix.
func (f *faultEnv) objects(prefix string) []string {
	f.t.Helper()
	var keys []string
	p := s3api.NewListObjectsV2Paginator(f.direct, &s3api.ListObjectsV2Input{
		Bucket: aws.String(faultBucket), Prefix: aws.String("db/" + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			f.t.Fatalf("list %s directly: %v", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// failedCleanly checks a command that a fault made fail: exit code and one
// line on stderr mentioning one of wants.
func failedCleanly(t *testing.T, r result, code int, wants ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	msg := strings.TrimSpace(r.stderr)
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "lifeboat: ") {
		t.Fatalf("stderr is not one line:\n%s", r.stderr)
	}
	for _, w := range wants {
		if strings.Contains(msg, w) {
			return
		}
	}
	t.Fatalf("stderr does not mention any of %q:\n%s", wants, msg)
}

// verifyClean runs verify --read-data, which must find nothing wrong.
func (f *faultEnv) verifyClean() {
	f.t.Helper()
	if out := f.mustRun("verify", "--read-data"); !strings.Contains(out, " 0 problems") {
		f.t.Fatalf("verify after faults:\n%s", out)
	}
}

func snapshotIDs(e *env) string {
	e.t.Helper()
	var ids []string
	for _, s := range e.snapshots() {
		ids = append(ids, s.ID)
	}
	return strings.Join(ids, " ")
}

// restoreThrough restores the latest state while the proxy deals out
// faults to the matching requests, and starts the result if the restore
// succeeded. It returns how many faults the restore met.
func (f *faultEnv) restoreThrough(match func(*http.Request) bool, faults ...s3test.Fault) (*pgtest.Cluster, result, int) {
	f.t.Helper()
	dir := filepath.Join(f.t.TempDir(), "restored")
	f.proxy.Inject(match, faults...)
	r := f.run("restore", "db", "--to", dir, "--archive-off")
	n := f.injected()
	f.proxy.Inject(nil)
	if r.code != 0 {
		return nil, r, n
	}
	c := pgtest.Open(f.t, dir, nil)
	c.WaitRecoveryDone(f.t, 120*time.Second)
	return c, r, n
}

func sameTables(t *testing.T, c *pgtest.Cluster, want map[string]string) {
	t.Helper()
	if got := c.TableChecksums(t, "postgres"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored tables differ:\n got %v\nwant %v", got, want)
	}
}

// TestFaultsDuringBackup runs backups while the store fails some or all of
// their uploads, then restores through failing downloads. A backup either
// survives a fault by retrying or exits 1 recording nothing; whatever
// happened, verify is clean afterwards and the next backup restores.
func TestFaultsDuringBackup(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t)
	f.sql("create table ledger (id int primary key, note text)")
	next := 0
	write := func(note string) {
		f.sql(fmt.Sprintf("insert into ledger select g, '%s' from generate_series(%d, %d) g", note, next+1, next+500))
		next += 500
	}
	write("first")
	f.mustRun("backup", "db")

	put := http.MethodPut
	transient := []struct {
		name   string
		match  func(*http.Request) bool
		faults []s3test.Fault
	}{
		{"503 on pack uploads", requests(put, "data/"), []s3test.Fault{s3test.Status503, s3test.Status503}},
		{"500 on the index upload", requests(put, "index/"), []s3test.Fault{s3test.Status500, s3test.Status500}},
		{"connection reset on the lock", requests(put, "locks/"), []s3test.Fault{s3test.Reset, s3test.Reset}},
		{"connection reset on the snapshot", requests(put, "snapshots/"), []s3test.Fault{s3test.Reset}},
		{"200 with an error body on a pack", requests(put, "data/"), []s3test.Fault{s3test.Status200Error, s3test.Status200Error}},
		{"200 with an error body on the snapshot", requests(put, "snapshots/"), []s3test.Fault{s3test.Status200Error}},
		{"answers lost after the store kept the object", requests(put, ""), []s3test.Fault{s3test.DropResponse, s3test.DropResponse, s3test.DropResponse, s3test.DropResponse}},
		{"slow answers", requests(put, ""), []s3test.Fault{s3test.SlowResponse, s3test.SlowResponse, s3test.SlowResponse}},
		{"a flipped byte in a pack upload", requests(put, "data/"), []s3test.Fault{s3test.FlipRequestBody}},
		{"a flipped byte in the snapshot upload", requests(put, "snapshots/"), []s3test.Fault{s3test.FlipRequestBody}},
	}
	for _, tc := range transient {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.name)
			before := len(f.snapshots())
			f.proxy.Inject(tc.match, tc.faults...)
			r := f.run("backup", "db")
			if n := f.injected(); n != len(tc.faults) {
				t.Fatalf("%d of %d faults reached the store", n, len(tc.faults))
			}
			f.proxy.Inject(nil)
			if after := len(f.snapshots()); r.code != 0 || r.stderr != "" || after != before+1 {
				t.Fatalf("backup through %s: exit %d, %d snapshots (was %d)\nstdout: %s\nstderr: %s",
					tc.name, r.code, after, before, r.stdout, r.stderr)
			}
		})
	}
	f.verifyClean()

	persistent := []struct {
		name  string
		match func(*http.Request) bool
		fault s3test.Fault
	}{
		{"every upload answered 503", requests(put, ""), s3test.Status503},
		{"every pack upload reset", requests(put, "data/"), s3test.Reset},
		{"every snapshot upload damaged in transit", requests(put, "snapshots/"), s3test.FlipRequestBody},
	}
	for _, tc := range persistent {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.name)
			before := snapshotIDs(f.env)
			stored := len(f.objects("snapshots/"))
			f.proxy.Inject(tc.match, always(tc.fault)...)
			start := time.Now()
			r := f.run("backup", "db")
			took := time.Since(start)
			if f.injected() == 0 {
				t.Fatal("no fault reached the store")
			}
			f.proxy.Inject(nil)
			t.Logf("failed after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
			failedCleanly(t, r, exitFailure, "backup db")
			if after := snapshotIDs(f.env); after != before {
				t.Fatalf("a failed backup changed the snapshots: %s, was %s", after, before)
			}
			if n := len(f.objects("snapshots/")); n != stored {
				t.Fatalf("%d snapshot objects stored, was %d", n, stored)
			}
			f.verifyClean()
		})
	}

	// The faults are gone: the next backup succeeds and restores.
	write("after the faults")
	f.mustRun("backup", "db")
	f.switchAndWait()
	f.verifyClean()
	want := f.pg.TableChecksums(t, "postgres")

	// The restores are independent: each runs through a proxy of its own,
	// into a directory and a server of its own.
	get := http.MethodGet
	t.Run("restore through transient download faults", func(t *testing.T) {
		t.Parallel()
		f := f.forTest(t)
		faults := []s3test.Fault{s3test.Status503, s3test.SlowResponse, s3test.Reset, s3test.Status500, s3test.Status200Error, s3test.Reset}
		c, r, n := f.restoreThrough(requests(get, "data/"), faults...)
		if c == nil || r.stderr != "" {
			t.Fatalf("restore: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		if n != len(faults) {
			t.Fatalf("%d of %d faults reached the store", n, len(faults))
		}
		sameTables(t, c, want)
	})
	// A download damaged on the way once is read again; damaged on every
	// read it ends the restore, loudly. It never becomes part of the
	// restored database.
	damaged := []struct {
		name   string
		match  func(*http.Request) bool
		faults []s3test.Fault
		ok     bool
	}{
		{"a flipped byte in a pack", requests(get, "data/"), []s3test.Fault{s3test.FlipResponse}, true},
		{"a flipped byte in the snapshot", requests(get, "snapshots/"), []s3test.Fault{s3test.FlipResponse}, true},
		{"a flipped byte in the index", requests(get, "index/"), []s3test.Fault{s3test.FlipResponse}, true},
		{"a flipped byte in the repository config", requests(get, "config"), []s3test.Fault{s3test.FlipResponse}, true},
		{"200 with an error body for the snapshot", requests(get, "snapshots/"), []s3test.Fault{s3test.Status200Error}, true},
		{"a flipped byte in every pack read", requests(get, "data/"), always(s3test.FlipResponse), false},
	}
	for _, tc := range damaged {
		t.Run("restore through "+tc.name, func(t *testing.T) {
			t.Parallel()
			f := f.forTest(t)
			c, r, n := f.restoreThrough(tc.match, tc.faults...)
			if n == 0 {
				t.Fatal("no fault reached the store")
			}
			if c == nil {
				if tc.ok {
					t.Fatalf("one damaged download failed the restore: exit %d: %s", r.code, r.stderr)
				}
				failedCleanly(t, r, exitFailure, "damaged", "checksum")
				t.Logf("restore refused the damaged download: %s", strings.TrimSpace(r.stderr))
				return
			}
			if !tc.ok {
				t.Fatal("a restore whose every pack read was damaged exited 0")
			}
			sameTables(t, c, want)
		})
	}
}

// walSegment writes a little and switches to a new WAL segment, returning
// the finished one's name. Archiving is off, so it stays in pg_wal.
func (f *faultEnv) walSegment() string {
	f.t.Helper()
	f.sql("insert into ledger (note) select 'wal' from generate_series(1, 200)")
	return f.sql("select pg_walfile_name(pg_switch_wal())")
}

// archived returns the key of seg in the store, or "".
func (f *faultEnv) archived(seg string) string {
	f.t.Helper()
	for _, k := range f.objects("wal/") {
		if strings.HasSuffix(k, "/"+seg) {
			return k
		}
	}
	return ""
}

// fetchedEquals fetches seg with wal-fetch and compares it with the file
// the server wrote.
func (f *faultEnv) fetchedEquals(t *testing.T, seg string) {
	t.Helper()
	dest := filepath.Join(t.TempDir(), seg)
	f.mustRun("wal-fetch", "db", seg, dest)
	if !f.sameAsServer(t, dest, seg) {
		t.Fatalf("archived %s differs from the server's", seg)
	}
}

// sameAsServer reports whether the file at path holds exactly the server's
// segment seg.
func (f *faultEnv) sameAsServer(t *testing.T, path, seg string) bool {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join(f.pg.DataDir, "pg_wal", seg))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(got, orig)
}

// TestFaultsDuringWALPush archives segments by hand (archiving paused) while
// the store fails their uploads, then fetches them through failing
// downloads. A push is retried or exits 1 with nothing stored; once the
// faults clear, archiving resumes, and the archive verifies and replays.
func TestFaultsDuringWALPush(t *testing.T) {
	t.Parallel()
	f := newFaultEnv(t)
	f.sql("create table ledger (id serial primary key, note text)")
	f.mustRun("backup", "db")
	f.sql("alter system set archive_command = ''")
	f.sql("select pg_reload_conf()")
	// The archiver reads the change at its next wakeup.
	time.Sleep(500 * time.Millisecond)

	const (
		ok    = false // the push is retried, succeeds and stores the segment
		fails = true  // exit 1, nothing stored, the next push succeeds
	)
	put := requests(http.MethodPut, "")
	cases := []struct {
		name   string
		faults []s3test.Fault
		fails  bool
	}{
		{"503", []s3test.Fault{s3test.Status503, s3test.Status503}, ok},
		{"500", []s3test.Fault{s3test.Status500, s3test.Status500}, ok},
		{"connection reset", []s3test.Fault{s3test.Reset, s3test.Reset}, ok},
		{"200 with an error body", []s3test.Fault{s3test.Status200Error, s3test.Status200Error}, ok},
		{"answer lost after the store kept it", []s3test.Fault{s3test.DropResponse}, ok},
		{"slow answer", []s3test.Fault{s3test.SlowResponse}, ok},
		{"a flipped byte", []s3test.Fault{s3test.FlipRequestBody}, ok},
		{"a flipped byte on every attempt", always(s3test.FlipRequestBody), fails},
		{"every upload answered 503", always(s3test.Status503), fails},
		{"every upload reset", always(s3test.Reset), fails},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seg := f.walSegment()
			if k := f.archived(seg); k != "" {
				t.Fatalf("%s is archived before the push: archiving was not paused", seg)
			}
			f.proxy.Inject(put, tc.faults...)
			start := time.Now()
			r := f.run("wal-push", "db", filepath.Join(f.pg.DataDir, "pg_wal", seg))
			took := time.Since(start)
			if n := f.injected(); n == 0 || !tc.fails && n != len(tc.faults) {
				t.Fatalf("%d of %d faults reached the store", n, len(tc.faults))
			}
			f.proxy.Inject(nil)
			stored := f.archived(seg) != ""
			if !tc.fails {
				if r.code != 0 || r.stderr != "" || !stored {
					t.Fatalf("wal-push through %s: exit %d, stored %v\nstdout: %s\nstderr: %s", tc.name, r.code, stored, r.stdout, r.stderr)
				}
			} else {
				t.Logf("failed after %v: %s", took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
				failedCleanly(t, r, exitFailure, seg)
				if stored {
					t.Fatalf("a failed push left %s in the store", seg)
				}
				f.mustRun("wal-push", "db", filepath.Join(f.pg.DataDir, "pg_wal", seg))
			}
			f.fetchedEquals(t, seg)
		})
	}

	seg := f.walSegment()
	f.mustRun("wal-push", "db", filepath.Join(f.pg.DataDir, "pg_wal", seg))
	get := requests(http.MethodGet, "wal/")
	fetches := []struct {
		name   string
		faults []s3test.Fault
		// damaged: the fetch may fail, but only with the status that
		// stops recovery, and leaving no file.
		damaged bool
	}{
		{"transient download faults", []s3test.Fault{s3test.Status503, s3test.Reset, s3test.Status500, s3test.SlowResponse}, false},
		{"a flipped byte", []s3test.Fault{s3test.FlipResponse}, false},
		{"a flipped byte on every attempt", always(s3test.FlipResponse), true},
	}
	for _, tc := range fetches {
		t.Run("wal-fetch through "+tc.name, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), seg)
			f.proxy.Inject(get, tc.faults...)
			r := f.run("wal-fetch", "db", seg, dest)
			if f.injected() == 0 {
				t.Fatal("no fault reached the store")
			}
			f.proxy.Inject(nil)
			if r.code != 0 {
				if !tc.damaged || r.code != exitWALFetchAbort {
					t.Fatalf("wal-fetch: exit %d, want 0 or %d: %s", r.code, exitWALFetchAbort, r.stderr)
				}
				if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a failed wal-fetch left %s: %v", dest, err)
				}
				t.Logf("wal-fetch refused the damaged download: %s", strings.TrimSpace(r.stderr))
				return
			}
			if !f.sameAsServer(t, dest, seg) {
				t.Fatal("wal-fetch exited 0 with a segment that differs from the archived one")
			}
		})
	}

	// Archiving resumes: the server pushes what it holds (again, for the
	// segments pushed by hand), and the archive is whole.
	f.sql("alter system reset archive_command")
	f.sql("select pg_reload_conf()")
	time.Sleep(500 * time.Millisecond)
	f.switchAndWait()
	if n := f.sql("select failed_count from pg_stat_archiver"); n != "0" {
		t.Logf("archiver failures while resuming: %s", n)
	}
	f.verifyClean()
	want := f.pg.TableChecksums(t, "postgres")
	sameTables(t, f.restoreAndStart(), want)
}
