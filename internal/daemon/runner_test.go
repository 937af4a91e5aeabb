package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// envTestChild makes the test binary play a child of the daemon (see
// testChild) instead of running the tests.
const envTestChild = "LIFEBOAT_DAEMON_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(envTestChild) != "" {
		os.Exit(testChild(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testChild is a child as ExecRunner starts it (-c CONFIG ACTION ASSET
// ...), reporting through a Reporter as lifeboat's main does; the asset
// name says how it behaves.
func testChild(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	rep := OpenReporter()
	if len(args) < 4 || args[0] != "-c" {
		fmt.Fprintf(os.Stderr, "bad arguments %q\n", args)
		return 3
	}
	action, asset := args[2], args[3]
	switch asset {
	case "ok":
		fmt.Println("snapshot aaaa of ok")
		if action == ActionDrill {
			rep.Drill(&evidence.DrillReport{ID: "drill-1", Asset: "ok", Snapshot: "dddd", Bytes: 7, Passed: true})
		} else {
			rep.Snapshot("aaaa", 10, 5)
		}
		rep.Finish(ctx, nil, nil)
		return 0
	case "fail":
		// The record says what the result says, whatever stderr says.
		fmt.Fprintln(os.Stderr, "lifeboat: not this line")
		rep.Finish(ctx, errors.New("backup fail: connect:\nrefused"), nil)
		return 1
	case "panic":
		fmt.Fprintln(os.Stderr, "lifeboat: not this line either")
		panic("boom")
	case "sigkill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	case "silent":
		return 0
	case "--platform": // drill --platform: what it was asked
		fmt.Println(strings.Join(args[2:], " "))
		rep.Finish(ctx, nil, nil)
		return 0
	case "garbage":
		os.NewFile(3, "result").WriteString("{not json")
		return 1
	case "stop":
		fmt.Println("ready")
		<-ctx.Done()
		rep.Finish(ctx, fmt.Errorf("backup stop: %w", ctx.Err()), nil)
		return 1
	case "ignore":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ready")
		time.Sleep(time.Minute)
	case "grandchild":
		// What this child starts sees neither the variable nor the
		// channel, and does not hold the channel open.
		out, err := exec.Command("/bin/sh", "-c", `echo "${LIFEBOAT_RESULT_FD:-unset}"; [ -e /proc/self/fd/3 ] && echo fd3 || echo no-fd3`).Output()
		if err != nil {
			rep.Finish(ctx, err, nil)
			return 1
		}
		sleep := exec.Command("sleep", "30")
		if err := sleep.Start(); err != nil {
			rep.Finish(ctx, err, nil)
			return 1
		}
		rep.Snapshot(strings.Join(strings.Fields(string(out)), " "), int64(sleep.Process.Pid), 0)
		rep.Finish(ctx, nil, nil)
		return 0
	}
	return 4
}

func execRunner(t *testing.T) *ExecRunner {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &ExecRunner{Exe: exe, Config: "/nonexistent/lifeboat.yaml", Env: []string{envTestChild + "=1"}}
}

// TestExecRunner: the result a child reports reaches the daemon through
// the pipe; a child that reports none is described by its exit status,
// and its output is never read for it.
func TestExecRunner(t *testing.T) {
	for _, tc := range []struct {
		asset, action string
		want          Exit
		output        string
	}{
		{"ok", ActionBackup, Exit{Result: &Result{Version: 1, Result: catalog.OK, Snapshot: "aaaa", Bytes: 10, BytesStored: 5}}, "snapshot aaaa of ok\n"},
		{"fail", ActionBackup, Exit{Result: &Result{Version: 1, Result: catalog.Failed, Error: "backup fail: connect:; refused"},
			Status: "exited with status 1"}, "lifeboat: not this line\n"},
		{"panic", ActionBackup, Exit{Status: "exited with status 2"}, "lifeboat: not this line either\npanic: boom"},
		{"sigkill", ActionBackup, Exit{Status: "killed by signal killed"}, ""},
		{"silent", ActionBackup, Exit{}, ""},
		{"garbage", ActionBackup, Exit{Status: "exited with status 1", ResultError: "its result does not decode: invalid character 'n' looking for beginning of object key string"}, ""},
	} {
		t.Run(tc.asset, func(t *testing.T) {
			t.Parallel()
			out := newOutputBuffer(outputLimit)
			x := execRunner(t).Run(Child{Action: tc.action, Asset: tc.asset, Stdout: out, Stderr: out})
			if fmt.Sprint(x.Result) != fmt.Sprint(tc.want.Result) || x.Status != tc.want.Status || x.ResultError != tc.want.ResultError || x.Stopped || x.Killed {
				t.Fatalf("exit %+v (result %+v), want %+v (result %+v)", x, x.Result, tc.want, tc.want.Result)
			}
			if !strings.HasPrefix(out.String(), tc.output) {
				t.Fatalf("output %q", out.String())
			}
		})
	}
	t.Run("drill", func(t *testing.T) {
		t.Parallel()
		x := execRunner(t).Run(Child{Action: ActionDrill, Asset: "ok", Stdout: newOutputBuffer(100), Stderr: newOutputBuffer(100)})
		if x.Result == nil || x.Result.Drill == nil || x.Result.Drill.ID != "drill-1" || x.Result.Snapshot != "dddd" || x.Result.Bytes != 7 {
			t.Fatalf("drill exit %+v", x)
		}
	})
	t.Run("stop", func(t *testing.T) {
		t.Parallel()
		stop, out := make(chan struct{}), newOutputBuffer(100)
		go func() {
			waitOutput(t, out, "ready")
			close(stop)
		}()
		x := execRunner(t).Run(Child{Action: ActionBackup, Asset: "stop", Stdout: out, Stderr: out, Stop: stop})
		if !x.Stopped || x.Killed || x.Result == nil || x.Result.Result != catalog.Aborted || x.Result.Error != "backup stop: context canceled" {
			t.Fatalf("stopped child: %+v %+v", x, x.Result)
		}
	})
	t.Run("kill", func(t *testing.T) {
		t.Parallel()
		stop, kill, out := make(chan struct{}), make(chan struct{}), newOutputBuffer(100)
		go func() {
			waitOutput(t, out, "ready")
			close(stop)
			close(kill)
		}()
		x := execRunner(t).Run(Child{Action: ActionBackup, Asset: "ignore", Stdout: out, Stderr: out, Stop: stop, Kill: kill})
		if !x.Stopped || !x.Killed || x.Result != nil || x.Status != "killed at the stop bound" {
			t.Fatalf("killed child: %+v", x)
		}
	})
	t.Run("grandchild", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		x := execRunner(t).Run(Child{Action: ActionBackup, Asset: "grandchild", Stdout: newOutputBuffer(100), Stderr: newOutputBuffer(100)})
		if x.Result != nil && x.Result.Bytes > 0 {
			syscall.Kill(int(x.Result.Bytes), syscall.SIGKILL)
		}
		if x.Result == nil || x.Result.Result != catalog.OK || x.Result.Snapshot != "unset no-fd3" {
			t.Fatalf("grandchild: %+v %+v", x, x.Result)
		}
		if d := time.Since(start); d >= waitDelay {
			t.Fatalf("a grandchild held the result channel: %s", d)
		}
	})
}

func waitOutput(t *testing.T, out *outputBuffer, what string) {
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), what) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// TestReporter: a process the daemon did not start has no reporter, nor
// one whose variable names a descriptor that is not a pipe.
func TestReporter(t *testing.T) {
	t.Setenv(EnvResultFD, "")
	os.Unsetenv(EnvResultFD)
	if OpenReporter() != nil {
		t.Fatal("a reporter without the variable")
	}
	f, err := os.CreateTemp(t.TempDir(), "not-a-pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv(EnvResultFD, strconv.Itoa(int(f.Fd())))
	if OpenReporter() != nil {
		t.Fatal("a reporter on a regular file")
	}
	if _, ok := os.LookupEnv(EnvResultFD); ok {
		t.Fatal("the variable is left for the processes this one starts")
	}
	var r *Reporter // what such a process holds: every call does nothing
	r.Snapshot("x", 1, 1)
	r.Drill(&evidence.DrillReport{})
	if err := r.Finish(context.Background(), errors.New("x"), nil); err != nil {
		t.Fatal(err)
	}
}

// TestSupervise covers the process handling the daemon relies on, without
// a daemon: hook timeouts on the daemon's clock kill what the shell
// started, a stop reaches the whole group, output stays bounded.
func TestSupervise(t *testing.T) {
	t.Run("timeout kills the group", func(t *testing.T) {
		clock := newFakeClock(t0)
		out := newOutputBuffer(1024)
		cmd := exec.Command("/bin/sh", "-c", "sleep 30 & echo started; wait")
		cmd.Stdout = out
		deadline := t0.Add(500 * time.Millisecond)
		go func() {
			waitOutput(t, out, "started")
			clock.Advance(500 * time.Millisecond)
		}()
		start := time.Now()
		st := supervise(cmd, nil, nil, &deadline, true, clock)
		if !st.timedOut || st.err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("status %+v after %s", st, time.Since(start))
		}
		if st.describe(500*time.Millisecond) != "timed out after 500ms" || !strings.Contains(out.String(), "started") {
			t.Fatalf("%q, output %q", st.describe(500*time.Millisecond), out.String())
		}
	})
	t.Run("stop reaches the group", func(t *testing.T) {
		stop, out := make(chan struct{}), newOutputBuffer(1024)
		cmd := exec.Command("/bin/sh", "-c", "echo started; sleep 30; echo not reached")
		cmd.Stdout = out
		go func() {
			waitOutput(t, out, "started")
			close(stop)
		}()
		st := supervise(cmd, stop, nil, nil, true, System)
		if !st.stopped || st.err == nil || strings.Contains(out.String(), "not reached") {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("kill after an ignored stop", func(t *testing.T) {
		stop, kill, out := make(chan struct{}), make(chan struct{}), newOutputBuffer(1024)
		cmd := exec.Command("/bin/sh", "-c", "trap '' TERM; echo started; sleep 30")
		cmd.Stdout = out
		go func() {
			waitOutput(t, out, "started")
			close(stop)
			time.Sleep(50 * time.Millisecond) // the stop is ignored
			close(kill)
		}()
		st := supervise(cmd, stop, kill, nil, true, System)
		if !st.killed || st.describe(0) != "killed at the stop bound" {
			t.Fatalf("status %+v", st)
		}
	})
	t.Run("exit status", func(t *testing.T) {
		st := supervise(exec.Command("/bin/sh", "-c", "exit 7"), nil, nil, nil, true, System)
		if st.describe(0) != "exited with status 7" {
			t.Fatalf("%q", st.describe(0))
		}
	})
}

func TestOutputBuffer(t *testing.T) {
	b := newOutputBuffer(100)
	fmt.Fprint(b, "small\n")
	if b.String() != "small\n" {
		t.Fatalf("%q", b.String())
	}
	for i := range 1000 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	s := b.String()
	if !strings.HasPrefix(s, "small\nline 0\n") || !strings.HasSuffix(s, "line 999\n") || !strings.Contains(s, "bytes left out") || len(s) > 150 {
		t.Fatalf("kept %d bytes: %q", len(s), s)
	}
	if lastLine(b.tailString()) != "line 999" {
		t.Fatalf("last line %q", lastLine(b.tailString()))
	}
}
