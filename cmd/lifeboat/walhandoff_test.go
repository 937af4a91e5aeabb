package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWALPushHandOff: with lifeboat serve running, wal-push hands the
// segment to it over the state directory's socket, and every rule of the
// archive contract holds through the daemon: the segment is archived
// whole, a re-push exits 0, conflicting content and a foreign cluster are
// refused with the archive unchanged; once the daemon stops, wal-push
// archives by itself again.
func TestWALPushHandOff(t *testing.T) {
	t.Parallel()
	e := newPassphraseEnv(t)
	d := e.serve()
	d.waitLog("WAL hand-off listening", time.Minute)

	seg := e.nextSegment()
	r := e.run("-v", "wal-push", "db", seg)
	if r.code != 0 || !strings.Contains(r.stderr, "by=serve") {
		t.Fatalf("push through serve: exit %d: %s", r.code, r.stderr)
	}
	e.fetchEquals(seg)
	if r := e.run("-v", "wal-push", "db", seg); r.code != 0 || !strings.Contains(r.stderr, "existed=true") || !strings.Contains(r.stderr, "by=serve") {
		t.Fatalf("re-push through serve: exit %d: %s", r.code, r.stderr)
	}

	forged := e.refusesConflictAndForeign(seg, "-v")

	// The small client: the same hand-off, the same refusals.
	lite := e.liteClient()
	seg2 := e.nextSegment()
	if r := lite.run("-v", "wal-push", "db", seg2); r.code != 0 || !strings.Contains(r.stderr, "by=serve") {
		t.Fatalf("lifeboat-walpush through serve: exit %d: %s", r.code, r.stderr)
	}
	e.fetchEquals(seg2)
	if r := lite.run("wal-push", "db", forged); r.code == 0 || !strings.Contains(r.stderr, "different content") {
		t.Fatalf("conflicting lifeboat-walpush: exit %d: %s", r.code, r.stderr)
	}

	if code := d.stop(time.Minute); code != 0 {
		t.Fatalf("serve exit %d:\n%s", code, d.stderr)
	}
	if _, err := os.Lstat(filepath.Join(e.dir, "state", "wal-push.sock")); !os.IsNotExist(err) {
		t.Fatalf("socket left after serve stopped: %v", err)
	}
	next := e.nextSegment()
	if r := e.run("-v", "wal-push", "db", next); r.code != 0 || strings.Contains(r.stderr, "by=serve") {
		t.Fatalf("push without serve: exit %d: %s", r.code, r.stderr)
	}
	e.fetchEquals(next)
	// Without a daemon the small client runs lifeboat itself.
	next2 := e.nextSegment()
	if r := lite.run("-v", "wal-push", "db", next2); r.code != 0 || !strings.Contains(r.stderr, "msg=archived") || strings.Contains(r.stderr, "by=serve") {
		t.Fatalf("lifeboat-walpush without serve: exit %d: %s", r.code, r.stderr)
	}
	e.fetchEquals(next2)
}

// liteClient is the env with cmd/lifeboat-walpush, built beside lifeboat,
// as its program.
func (e *env) liteClient() *env {
	lite := *e
	lite.bin = filepath.Join(filepath.Dir(e.bin), "lifeboat-walpush")
	return &lite
}

// TestWALPushServeKilledAtRandom kills lifeboat serve with SIGKILL at a
// random moment while wal-push waits on it: a push that exited 0 has its
// segment in the repository, whole; one that did not is retried, finds the
// daemon's socket stale, archives by itself and exits 0.
func TestWALPushServeKilledAtRandom(t *testing.T) {
	t.Parallel()
	e := newPassphraseEnv(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	acked, failed := 0, 0
	// Round 0 is not killed: how long a push through a fresh daemon takes
	// (opening the repository, Argon2id, S2 and AES-GCM, the store) sets
	// the range the kills of the later rounds are drawn from.
	var full time.Duration
	for round := 0; round < 9; round++ {
		d := e.serve()
		d.waitLog("WAL hand-off listening", time.Minute)
		seg := e.nextSegment()
		// Odd rounds hand over through the small client.
		bin := e.bin
		if round%2 == 1 {
			bin = e.liteClient().bin
		}
		cmd := exec.Command(bin, "-c", e.policy, "-v", "wal-push", "db", seg)
		var stderr syncBuffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A push through a fresh daemon opens the repository and derives
		// the key (Argon2id), then compresses, encrypts and stores: a few
		// hundred milliseconds here, so the kill lands before, during or
		// after it.
		delay := time.Duration(rng.Int64N(int64(full)*3/2 + 1))
		start := time.Now()
		if round == 0 {
			delay = time.Hour
		}
		timer := time.AfterFunc(delay, func() { d.cmd.Process.Signal(syscall.SIGKILL) })
		err := cmd.Wait()
		timer.Stop()
		if round == 0 {
			if err != nil {
				t.Fatalf("push through serve: %v\n%s", err, stderr.String())
			}
			full = time.Since(start)
			delay = 0
		}
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
		t.Logf("round %d: serve killed after %v; wal-push: %v %s", round, delay, err, lastLine(stderr.String()))
		if err == nil {
			if !strings.Contains(stderr.String(), "by=serve") {
				t.Fatalf("round %d: push did not go through serve:\n%s", round, stderr.String())
			}
			acked++
			// Exit 0 is a promise: the segment is archived, whole.
			e.fetchEquals(seg)
		} else {
			failed++
			if strings.Contains(stderr.String(), "level=INFO msg=archived") {
				t.Fatalf("round %d: wal-push failed after saying it archived:\n%s", round, stderr.String())
			}
		}
		// PostgreSQL's retry: the stale socket sends it down the direct
		// path, which accepts what the killed daemon may have stored.
		if r := e.run("-v", "wal-push", "db", seg); r.code != 0 || strings.Contains(r.stderr, "by=serve") {
			t.Fatalf("round %d: retry: exit %d: %s", round, r.code, r.stderr)
		}
		e.fetchEquals(seg)
	}
	t.Logf("%d pushes acknowledged before the kill, %d failed by it", acked, failed)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
