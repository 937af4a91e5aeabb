package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestChildrenSeeNoSecrets runs a scheduled pg_dump backup with pre and
// post hooks under lifeboat serve, then a drill of it, with secrets in
// the environment the policy reads (the database password, an alert's
// secret) and one it does not (an AWS key, which only a restored server's
// wal-fetch is given). Lifeboat itself holds them;
// none of its children may: every PostgreSQL program runs through a
// wrapper that records its /proc/<pid>/cmdline and environ, the hooks
// record theirs, and all the while /proc is scanned for any process of
// this user, other than lifeboat and this test, whose environment or
// command line holds one (the drill's server, which pg_ctl leaves
// running, among them).
func TestChildrenSeeNoSecrets(t *testing.T) {
	t.Parallel()
	// Values of this run alone: other test processes on the host (this
	// test, run by someone else) plant their own.
	nonce := rand.Text()
	secrets := map[string]string{
		"database password": "db-pass-" + nonce,
		"alert secret":      "alert-secret-" + nonce,
		"AWS key":           "aws-secret-" + nonce,
	}
	passVar := testEnv(t, "LB_CHILDENV_DB_PASSWORD", secrets["database password"])
	alertVar := testEnv(t, "LB_CHILDENV_ALERT_SECRET", secrets["alert secret"])
	testEnv(t, "AWS_LB_CHILDENV_SECRET", secrets["AWS key"])

	logs := t.TempDir()
	hooks := fmt.Sprintf(`    hooks:
      pre: 'tr "\0" "\n" < /proc/$$$$/environ > %[1]s/pre.environ; tr "\0" " " < /proc/$$$$/cmdline > %[1]s/pre.cmdline'
      post: 'tr "\0" "\n" < /proc/$$$$/environ > %[1]s/post.environ; tr "\0" " " < /proc/$$$$/cmdline > %[1]s/post.cmdline'
alerts:
  - kind: webhook
    name: oncall
    url: https://127.0.0.1:1/alert
    secret: "${%[2]s}"
`, logs, alertVar)
	e := newDumpEnv(t, func(c *pgtest.Cluster) string { return c.DSN("app") + " password=${" + passVar + "}" },
		everySecond+hooks)
	e.pg.Psql(t, "app", "create table ledger as select g from generate_series(1, 1000) g")

	// Every PostgreSQL program Lifeboat finds is a wrapper around the real one.
	shims := t.TempDir()
	entries, err := os.ReadDir(e.pg.BinDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range entries {
		script := "#!/bin/sh\n" +
			"{ tr '\\0' ' ' < /proc/$$/cmdline; echo; } >> " + filepath.Join(logs, "pg.cmdline") + "\n" +
			"{ tr '\\0' '\\n' < /proc/$$/environ; echo; } >> " + filepath.Join(logs, "pg.environ") + "\n" +
			"exec " + filepath.Join(e.pg.BinDir, ent.Name()) + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(shims, ent.Name()), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	childEnv := append(os.Environ(), pgbin.EnvBin+"="+shims)

	// The scan also sees servers other tests' drills leave running, which
	// get the AWS_* variables of this process by design (a restored
	// server's wal-fetch may need them): it looks for the other two.
	scan := newSecretScan(t, e.bin, map[string]string{
		"database password": secrets["database password"], "alert secret": secrets["alert secret"]})
	defer scan.stop()

	d := &daemonProc{t: t, stderr: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(e.bin, "-c", e.policy, "serve", "--drain-interval", "1s")
	d.cmd.Env, d.cmd.Stderr = childEnv, d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		d.code = d.cmd.ProcessState.ExitCode()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Signal(syscall.SIGKILL)
			<-d.exited
		}
	})
	waitFor(t, 90*time.Second, "a scheduled backup with its hooks", func() bool {
		_, err := os.Stat(filepath.Join(logs, "post.environ"))
		return countRuns(e.runs(), "ok") >= 1 && err == nil
	}, d.stderr.String)
	if code := d.stop(30 * time.Second); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, d.stderr)
	}

	drill := exec.Command(e.bin, "-c", e.policy, "drill", "dump")
	drill.Env = childEnv
	var out bytes.Buffer
	drill.Stdout, drill.Stderr = &out, &out
	if err := drill.Run(); err != nil {
		t.Fatalf("drill: %v\n%s", err, out.String())
	}
	scan.stop()

	pgCmdlines, _ := os.ReadFile(filepath.Join(logs, "pg.cmdline"))
	for _, prog := range []string{"pg_dump ", "pg_dumpall ", "initdb ", "pg_ctl ", "pg_restore ", "psql ", "pg_amcheck "} {
		if !strings.Contains(string(pgCmdlines), "/"+prog) {
			t.Errorf("no %sran through the wrapper:\n%s", prog, pgCmdlines)
		}
	}
	for _, f := range []string{"pg.cmdline", "pg.environ", "pre.cmdline", "pre.environ", "post.cmdline", "post.environ"} {
		b, err := os.ReadFile(filepath.Join(logs, f))
		if err != nil || len(b) == 0 {
			t.Errorf("%s: %v (nothing recorded)", f, err)
			continue
		}
		for what, v := range secrets {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("the %s is in %s", what, f)
			}
		}
	}
	if pre, _ := os.ReadFile(filepath.Join(logs, "pre.environ")); !bytes.Contains(pre, []byte("LIFEBOAT_ASSET=dump")) {
		t.Errorf("the pre hook lacks what Lifeboat tells it:\n%s", pre)
	}
	if scan.seen() == 0 {
		t.Fatal("the /proc scan saw no child of lifeboat")
	}
	for _, v := range scan.violations() {
		t.Error(v)
	}
}

// secretScan polls /proc for processes of this user that hold a secret
// in their environment or command line. Lifeboat itself needs them and is
// left out; so are the processes this test binary starts itself (other
// tests' psql, say, inherit its whole environment, secrets included) and
// the test clusters, which stand in for production servers and get it
// too.
// What lifeboat starts is checked, and so is anything that left its
// parent (a server pg_ctl started).
type secretScan struct {
	lifeboat string
	secrets  map[string]string
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup

	mu       sync.Mutex
	found    map[string]bool
	children map[int]bool // processes seen that lifeboat started
}

func newSecretScan(t *testing.T, lifeboat string, secrets map[string]string) *secretScan {
	s := &secretScan{lifeboat: lifeboat, secrets: secrets, done: make(chan struct{}), found: map[string]bool{}, children: map[int]bool{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			s.pass()
		}
	}()
	return s
}

// origin says who started pid: "lifeboat" when a lifeboat process is
// among its ancestors, "test" when this test binary is and no lifeboat
// comes first, "" when neither (a daemon that left its parent).
func (s *secretScan) origin(pid int) string {
	for range 64 {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return ""
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			return ""
		}
		ppid, _ := strconv.Atoi(f[1])
		switch {
		case ppid <= 1:
			return ""
		case ppid == os.Getpid():
			return "test"
		}
		if exe, _ := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/exe"); exe == s.lifeboat {
			return "lifeboat"
		}
		pid = ppid
	}
	return ""
}

func (s *secretScan) pass() {
	dirs, _ := os.ReadDir("/proc")
	uid := os.Getuid()
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+d.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		exe, _ := os.Readlink("/proc/" + d.Name() + "/exe")
		environ, err1 := os.ReadFile("/proc/" + d.Name() + "/environ")
		cmdline, err2 := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if err1 != nil || err2 != nil || exe == s.lifeboat {
			continue
		}
		origin := s.origin(pid)
		if origin == "test" || bytes.Contains(environ, []byte(pgtest.ServerMarker)) {
			continue // the test's own, or a test cluster pg_ctl left running
		}
		name := strings.ReplaceAll(string(bytes.TrimRight(cmdline, "\x00")), "\x00", " ")
		s.mu.Lock()
		if origin == "lifeboat" {
			s.children[pid] = true
		}
		for what, v := range s.secrets {
			if bytes.Contains(cmdline, []byte(v)) {
				s.found[fmt.Sprintf("the %s is on the command line of %d (%s)", what, pid, name)] = true
			}
			if bytes.Contains(environ, []byte(v)) {
				s.found[fmt.Sprintf("the %s is in the environment of %d (%s, %s)", what, pid, exe, name)] = true
			}
		}
		s.mu.Unlock()
	}
}

func (s *secretScan) stop() {
	s.once.Do(func() { close(s.done) })
	s.wg.Wait()
}

// seen is how many processes lifeboat started the scan looked at.
func (s *secretScan) seen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.children)
}

func (s *secretScan) violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for v := range s.found {
		out = append(out, v)
	}
	return out
}
