package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
	"github.com/lifeboat-dr/lifeboat/internal/walstream"
)

// streamer runs an asset's WAL stream into r until the test ends, and
// tells the durable position it last reported.
type streamer struct {
	cancel  context.CancelFunc
	done    chan error
	durable atomic.Uint64
}

func startStreamer(t *testing.T, r *repo.Repository, c *pgtest.Cluster, flush time.Duration) *streamer {
	t.Helper()
	cfg := StreamConfig(StreamOptions{Repo: r, Asset: "pg", DSN: c.DSN("postgres"), SpoolDir: t.TempDir(), FlushInterval: flush,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	s := &streamer{done: make(chan error, 1)}
	cfg.Progress = func(l pglogrepl.LSN) { s.durable.Store(uint64(l)) }
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { s.done <- walstream.Run(ctx, cfg, 50*time.Millisecond) }()
	t.Cleanup(s.stop)
	// The stream is on once the server sees it.
	deadline := time.Now().Add(30 * time.Second)
	// "streaming", not merely connected: the slot turns active only at
	// START_REPLICATION, which a loaded machine may reach well after the
	// walsender appears.
	for c.Psql(t, "postgres", "select count(*) from pg_stat_replication where application_name = 'lifeboat_pg' and state = 'streaming'") != "1" {
		if time.Now().After(deadline) {
			t.Fatal("WAL stream did not connect")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return s
}

func (s *streamer) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

// waitStored waits until the archive holds segment seg (a full one).
func waitStored(t *testing.T, r *repo.Repository, seg string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		newest, _, err := NewestWAL(t.Context(), r, "pg")
		if err != nil {
			t.Fatal(err)
		}
		if newest >= seg {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not streamed in time (newest %q)", seg, newest)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// switchWAL ends the current segment and returns its name.
func switchWAL(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	out := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn()); select pg_switch_wal()")
	seg, _, _ := strings.Cut(out, "\n")
	return seg
}

// The stream stores every completed segment exactly as wal-push stores
// the server's own file (PushWAL of archive_command's copy finds it there,
// identical), across a restart of the server without a gap, and keeps the
// segment in progress as a partial.
func TestStreamStoresSegmentsAsWALPush(t *testing.T) {
	t.Parallel()
	archive := t.TempDir()
	c := pgtest.Start(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": "cp %p " + archive + "/%f", "wal_level": "replica"}})
	r := repotest.New(t)
	s := startStreamer(t, r, c, 50*time.Millisecond)
	first := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn())")

	c.Psql(t, "postgres", "create table t(id int primary key, pad text); insert into t select g, repeat('x', 200) from generate_series(1, 20000) g")
	switchWAL(t, c)
	c.Restart(t) // the stream reconnects and resumes from its slot
	c.Psql(t, "postgres", "update t set pad = repeat('z', 200) where id % 3 = 0")
	switchWAL(t, c)
	c.Psql(t, "postgres", "insert into t select g, repeat('y', 200) from generate_series(20001, 40000) g")
	last := switchWAL(t, c)
	waitStored(t, r, last)
	c.WaitArchived(t, last, 60*time.Second)

	// The segment in progress is held as a partial once flushed.
	c.Psql(t, "postgres", "insert into t values (0, 'partial')")
	cur := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn())")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ident, err := LoadIdentity(t.Context(), r, "pg")
		if err != nil {
			t.Fatal(err)
		}
		parts, err := streamPartials(t.Context(), r, "pg", ident.WALSegmentSize)
		if err != nil {
			t.Fatal(err)
		}
		if len(parts) == 1 && parts[0].name.String() == cur {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single partial of %s: %+v", cur, parts)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()

	compareWithArchive(t, r, archive, first, last)
}

// compareWithArchive pushes archive_command's copies of the segments from
// first to last with PushWAL: each must be found stored, identical, and
// the range must have no gap.
func compareWithArchive(t *testing.T, r *repo.Repository, archive, first, last string) {
	t.Helper()
	files, err := os.ReadDir(archive)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, f := range files {
		name := f.Name()
		if len(name) != 24 || name < first || name > last {
			continue
		}
		res, err := PushWAL(t.Context(), r, "pg", filepath.Join(archive, name), nil)
		if err != nil {
			t.Fatalf("wal-push of archive_command's %s after the stream: %v", name, err)
		}
		if !res.Existed {
			t.Errorf("%s: the stream had not stored it", name)
		}
		checked++
	}
	if checked < 3 {
		t.Fatalf("only %d segments compared", checked)
	}
	ident, _ := LoadIdentity(t.Context(), r, "pg")
	n, _ := ParseWALFileName(first, ident.WALSegmentSize)
	l, _ := ParseWALFileName(last, ident.WALSegmentSize)
	if err := CheckWALRange(t.Context(), r, "pg", n.TLI, n.StartLSN(), l.StartLSN()+1, ident.WALSegmentSize); err != nil {
		t.Fatalf("gap in the streamed archive: %v", err)
	}
}

// A server killed under load, restored to latest from a base backup and
// the stream's archive (with the partial handed out as the last segment):
// every commit the stream had made durable before the kill is back.
func TestStreamRecoversEveryDurableCommit(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	r := repotest.New(t)
	s := startStreamer(t, r, c, 20*time.Millisecond)
	c.Psql(t, "postgres", "create table ledger(id int primary key, pad text)")
	base := filepath.Join(t.TempDir(), "base")
	out, err := exec.Command(filepath.Join(c.BinDir, "pg_basebackup"), "-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-D", base, "-X", "none", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// The base backup needs the WAL from its start: wait until the stream
	// holds it, or a loaded machine restores from a stream that lagged
	// behind the backup (which recovery rightly refuses).
	backupEnd, _ := pglogrepl.ParseLSN(c.Psql(t, "postgres", "select pg_current_wal_insert_lsn()"))
	for deadline := time.Now().Add(60 * time.Second); pglogrepl.LSN(s.durable.Load()) < backupEnd; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not reach the base backup's end %s in time (durable %s)", backupEnd, pglogrepl.LSN(s.durable.Load()))
		}
	}

	// Commit rows one by one, noting each commit's end position.
	type commit struct {
		id  int
		lsn pglogrepl.LSN
	}
	var mu sync.Mutex
	var commits []commit
	conn, err := pgx.Connect(t.Context(), c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(1500 * time.Millisecond)
	for id := 1; time.Now().Before(stop); id++ {
		var lsn string
		if err := conn.QueryRow(t.Context(), "insert into ledger values ($1, repeat(md5(random()::text), 64)) returning pg_current_wal_insert_lsn()::text", id).Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		l, _ := pglogrepl.ParseLSN(lsn)
		mu.Lock()
		commits = append(commits, commit{id, l})
		mu.Unlock()
	}
	conn.Close(context.Background())
	c.StopImmediate(t) // the crash
	s.stop()
	durable := pglogrepl.LSN(s.durable.Load())

	// What restore_command would be handed: every archived segment, and
	// for the first one absent, what wal-fetch answers.
	ident, err := LoadIdentity(t.Context(), r, "pg")
	if err != nil {
		t.Fatal(err)
	}
	fetched := t.TempDir()
	var segs []string
	if err := r.ListNamed(t.Context(), walArea, "pg", "", func(rel string, _ int64) error {
		if b := filepath.Base(rel); len(b) == 24 && !strings.HasPrefix(rel, streamDir+"/") {
			segs = append(segs, b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(segs)
	for _, seg := range segs {
		if err := FetchWAL(t.Context(), r, "pg", seg, filepath.Join(fetched, seg)); err != nil {
			t.Fatal(err)
		}
	}
	parts, err := streamPartials(t.Context(), r, "pg", ident.WALSegmentSize)
	if err != nil || len(parts) != 1 {
		t.Fatalf("want one streamed partial after the crash, have %+v (%v)", parts, err)
	}
	next := parts[0].name
	if len(segs) > 0 && segs[len(segs)-1] >= next.String() {
		t.Fatalf("partial %s is not after the newest segment %s", next, segs[len(segs)-1])
	}
	if err := FetchWAL(t.Context(), r, "pg", next.String(), filepath.Join(fetched, next.String())); !errors.Is(err, ErrWALNotFound) {
		t.Fatalf("FetchWAL of the segment in progress: %v, want not found", err)
	}
	if err := FetchStreamedPartial(t.Context(), r, "pg", next.String(), filepath.Join(fetched, next.String())); err != nil {
		t.Fatalf("partial of %s: %v", next, err)
	}
	// Anything before the partial is a full segment's business: asking
	// the stream for it is refused as a gap, which stops recovery.
	prev := WALName{Kind: WALSegment, TLI: next.TLI, SegNo: next.SegNo - 1, SegSize: next.SegSize}
	if err := FetchStreamedPartial(t.Context(), r, "pg", prev.String(), filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrWALGap) {
		t.Fatalf("partial handed out for an earlier segment: %v", err)
	}
	conf := "restore_command = 'cp " + fetched + "/%f %p'\nrecovery_target_timeline = 'latest'\n"
	if err := os.WriteFile(filepath.Join(base, "postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restored := pgtest.Open(t, base, nil)
	restored.WaitRecoveryDone(t, 120*time.Second)
	got := restored.Psql(t, "postgres", "select coalesce(max(id), 0), count(*) from ledger")
	maxID, count, _ := strings.Cut(got, "|")
	m, _ := strconv.Atoi(maxID)
	n, _ := strconv.Atoi(count)
	if m != n {
		t.Fatalf("restored ledger has holes: max %d, %d rows", m, n)
	}
	wantAtLeast := 0
	for _, cm := range commits {
		if cm.lsn <= durable {
			wantAtLeast = cm.id
		}
	}
	if wantAtLeast == 0 || m < wantAtLeast {
		t.Fatalf("restored up to commit %d, but commits up to %d were durable in the stream (durable %s, %d commits)", m, wantAtLeast, durable, len(commits))
	}
	t.Logf("commits acknowledged %d, durable in the stream %d, restored %d (durable position %s)", len(commits), wantAtLeast, m, durable)
}

// The slot watch reads what the stream's slot holds back: once the stream
// is down and the server writes on, the retained WAL passes a threshold.
func TestStreamSlotState(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	r := repotest.New(t)
	a := &policy.Asset{Name: "pg", Config: &Config{DSN: c.DSN("postgres"), WAL: WALConfig{Stream: true, SlotMaxRetained: 4 << 20}}}
	if st := (kind{}).StreamState(t.Context(), a); st.Error != "" || st.Exists {
		t.Fatalf("before any stream: %+v", st)
	}
	s := startStreamer(t, r, c, 50*time.Millisecond)
	if st := (kind{}).StreamState(t.Context(), a); st.Error != "" || !st.Exists || !st.Active || st.WALStatus != "reserved" {
		t.Fatalf("while streaming: %+v", st)
	}
	s.stop()
	c.Psql(t, "postgres", "create table t(pad text); insert into t select repeat('x', 1000) from generate_series(1, 20000)")
	switchWAL(t, c)
	st := (kind{}).StreamState(t.Context(), a)
	if st.Error != "" || !st.Exists || st.Active || st.RetainedBytes <= st.MaxRetained || st.SafeBytes != nil || st.Slot != "lifeboat_pg" {
		t.Fatalf("stream down, server writing: %+v", st)
	}
}

// Streaming from a standby that is promoted follows the new timeline: the
// history file is stored, the segments before the switch keep the old
// timeline's names, and the stream goes on in the new one.
func TestStreamFollowsTimelineSwitch(t *testing.T) {
	t.Parallel()
	primary := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	dir := filepath.Join(t.TempDir(), "standby")
	out, err := exec.Command(filepath.Join(primary.BinDir, "pg_basebackup"), "-h", primary.SocketDir, "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", dir, "-R", "-X", "stream", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	standby := pgtest.Open(t, dir, map[string]string{"hot_standby": "on"})
	r := repotest.New(t)
	startStreamer(t, r, standby, 50*time.Millisecond)

	primary.Psql(t, "postgres", "create table t(id int, pad text); insert into t select g, repeat('a', 500) from generate_series(1, 20000) g")
	old := switchWAL(t, primary)
	waitStored(t, r, old)

	standby.Psql(t, "postgres", "select pg_promote()")
	standby.WaitRecoveryDone(t, 60*time.Second)
	primary.StopImmediate(t)
	standby.Psql(t, "postgres", "insert into t select g, repeat('b', 500) from generate_series(20001, 40000) g")
	last := switchWAL(t, standby)
	if !strings.HasPrefix(last, "00000002") {
		t.Fatalf("promoted standby writes %s, want timeline 2", last)
	}
	waitStored(t, r, last)
	if ok, err := r.HasNamed(t.Context(), walArea, "pg", "history/00000002.history"); err != nil || !ok {
		t.Fatalf("00000002.history not stored: %v", err)
	}
	if ok, err := r.HasNamed(t.Context(), walArea, "pg", "00000001/"+old); err != nil || !ok {
		t.Fatalf("%s of the old timeline not stored: %v", old, err)
	}
	// Every segment of the new timeline from the switch on is stored.
	ident, _ := LoadIdentity(t.Context(), r, "pg")
	// The switch falls in the segment after the old timeline's last full one.
	first := WALName{Kind: WALSegment, TLI: 2, SegNo: 0, SegSize: ident.WALSegmentSize}
	o, _ := ParseWALFileName(old, ident.WALSegmentSize)
	first.SegNo = o.SegNo + 1
	l, _ := ParseWALFileName(last, ident.WALSegmentSize)
	if err := CheckWALRange(t.Context(), r, "pg", 2, first.StartLSN(), l.StartLSN()+1, ident.WALSegmentSize); err != nil {
		t.Fatalf("timeline 2 from %s to %s: %v", first, last, err)
	}
}

// proxy forwards a Unix socket to a server's, and can cut every
// connection and refuse new ones: a network cut between the stream and
// the server.
type proxy struct {
	ln    net.Listener
	to    string
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func newProxy(t *testing.T, c *pgtest.Cluster) (*proxy, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgproxy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := fmt.Sprintf(".s.PGSQL.%d", c.Port)
	ln, err := net.Listen("unix", filepath.Join(dir, sock))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, to: filepath.Join(c.SocketDir, sock)}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				in.Close()
				continue
			}
			out, err := net.Dial("unix", p.to)
			if err != nil {
				p.mu.Unlock()
				in.Close()
				continue
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
	return p, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", dir, c.Port)
}

// cut closes every connection through the proxy and refuses new ones
// until heal.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) heal() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// A network cut between the stream and the server, while the server
// writes on, heals with no gap and no conflict: every segment is stored
// once, identical to archive_command's copy.
func TestStreamHealsNetworkCut(t *testing.T) {
	t.Parallel()
	archive := t.TempDir()
	c := pgtest.Start(t, pgtest.Options{Conf: map[string]string{
		"archive_mode": "on", "archive_command": "cp %p " + archive + "/%f", "wal_level": "replica"}})
	p, dsn := newProxy(t, c)
	r := repotest.New(t)
	cfg := StreamConfig(StreamOptions{Repo: r, Asset: "pg", DSN: dsn, SpoolDir: t.TempDir(), FlushInterval: 50 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- walstream.Run(ctx, cfg, 50*time.Millisecond) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	defer stop()
	first := c.Psql(t, "postgres", "select pg_walfile_name(pg_current_wal_lsn())")
	waitStreaming := func() {
		deadline := time.Now().Add(30 * time.Second)
		// "streaming", not merely connected: the slot turns active only at
		// START_REPLICATION, which a loaded machine may reach well after the
		// walsender appears.
		for c.Psql(t, "postgres", "select count(*) from pg_stat_replication where application_name = 'lifeboat_pg' and state = 'streaming'") != "1" {
			if time.Now().After(deadline) {
				t.Fatal("WAL stream did not connect")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStreaming()
	c.Psql(t, "postgres", "create table t(id int, pad text); insert into t select g, repeat('a', 300) from generate_series(1, 20000) g")
	p.cut()
	// Written while the stream is cut off: the slot keeps it.
	c.Psql(t, "postgres", "insert into t select g, repeat('b', 300) from generate_series(1, 20000) g")
	switchWAL(t, c)
	c.Psql(t, "postgres", "insert into t select g, repeat('c', 300) from generate_series(1, 20000) g")
	p.heal()
	waitStreaming()
	last := switchWAL(t, c)
	waitStored(t, r, last)
	c.WaitArchived(t, last, 60*time.Second)
	stop()
	compareWithArchive(t, r, archive, first, last)
}

// A stream of another cluster into an asset is refused for good, as
// wal-push refuses its segments, and stores nothing.
func TestStreamRefusesOtherCluster(t *testing.T) {
	t.Parallel()
	a := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	b := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	r := repotest.New(t)
	s := startStreamer(t, r, a, 50*time.Millisecond)
	s.stop()
	before, _, err := NewestWAL(t.Context(), r, "pg")
	if err != nil {
		t.Fatal(err)
	}
	cfg := StreamConfig(StreamOptions{Repo: r, Asset: "pg", DSN: b.DSN("postgres"), SpoolDir: t.TempDir(), Log: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	err = walstream.Run(ctx, cfg, 50*time.Millisecond)
	var perm *walstream.PermanentError
	if !errors.As(err, &perm) || !errors.Is(err, ErrOtherCluster) {
		t.Fatalf("stream of another cluster: %v", err)
	}
	after, _, err := NewestWAL(t.Context(), r, "pg")
	if err != nil || after != before {
		t.Fatalf("newest WAL %q, was %q (%v)", after, before, err)
	}
}

// Synchronous mode: with the stream named in synchronous_standby_names, a
// commit returns only once the stream has stored it, so a crash loses no
// acknowledged commit.
func TestStreamSynchronousLosesNoCommit(t *testing.T) {
	t.Parallel()
	c := pgtest.Start(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica", "synchronous_standby_names": "lifeboat_pg"}})
	r := repotest.New(t)
	s := startStreamer(t, r, c, 10*time.Millisecond)
	c.Psql(t, "postgres", "create table ledger(id int primary key)")
	base := filepath.Join(t.TempDir(), "base")
	out, err := exec.Command(filepath.Join(c.BinDir, "pg_basebackup"), "-h", c.SocketDir, "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-D", base, "-X", "none", "-c", "fast").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	conn := mustConnect(t, c)
	acked := 0
	for stop := time.Now().Add(time.Second); time.Now().Before(stop); {
		if _, err := conn.Exec(t.Context(), "insert into ledger values ($1)", acked+1); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	c.StopImmediate(t)
	s.stop()
	restored := restoreFromStream(t, r, base)
	if got := restored.Psql(t, "postgres", "select count(*) from ledger"); got != strconv.Itoa(acked) {
		t.Fatalf("restored %s rows, %d commits were acknowledged", got, acked)
	}
	t.Logf("%d synchronous commits in 1s, all restored", acked)
}

func mustConnect(t *testing.T, c *pgtest.Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// restoreFromStream starts base with what restore_command would be
// handed: every archived segment and, for the segment in progress, the
// stream's partial through FetchStreamedPartial.
func restoreFromStream(t *testing.T, r *repo.Repository, base string) *pgtest.Cluster {
	t.Helper()
	ident, err := LoadIdentity(t.Context(), r, "pg")
	if err != nil {
		t.Fatal(err)
	}
	fetched := t.TempDir()
	if err := r.ListNamed(t.Context(), walArea, "pg", "", func(rel string, _ int64) error {
		if b := filepath.Base(rel); len(b) == 24 && !strings.HasPrefix(rel, streamDir+"/") {
			return FetchWAL(t.Context(), r, "pg", b, filepath.Join(fetched, b))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	parts, err := streamPartials(t.Context(), r, "pg", ident.WALSegmentSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if err := FetchStreamedPartial(t.Context(), r, "pg", p.name.String(), filepath.Join(fetched, p.name.String())); err != nil {
			t.Fatal(err)
		}
	}
	conf := "restore_command = 'cp " + fetched + "/%f %p'\nrecovery_target_timeline = 'latest'\n"
	if err := os.WriteFile(filepath.Join(base, "postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "recovery.signal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := pgtest.Open(t, base, nil)
	c.WaitRecoveryDone(t, 120*time.Second)
	return c
}
