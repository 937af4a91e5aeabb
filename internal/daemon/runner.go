package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Actions a child carries out.
const (
	ActionBackup = "backup"
	ActionDrill  = "drill"
	// ActionPlatform is the platform exercise (drill --platform), whose
	// Child has no Asset.
	ActionPlatform = "platform"
)

// Child is one run the daemon hands to its Runner: a backup or a drill of
// one asset, as `lifeboat backup ASSET` or `lifeboat drill ASSET` would
// carry it out by hand.
type Child struct {
	Action string // ActionBackup or ActionDrill
	Asset  string
	// Stdout and Stderr receive what the child prints, for the record.
	Stdout, Stderr io.Writer
	// Stop is closed when the daemon stops: the child is asked to end
	// without recording anything more. Kill is closed at the stop bound:
	// the child is killed with everything it started.
	Stop, Kill <-chan struct{}
}

// Exit is how a child ended.
type Exit struct {
	// Result is the document the child reported; nil when it reported
	// none (it crashed, or was killed) or one that could not be read.
	Result *Result
	// ResultError says why a document the child wrote could not be read.
	ResultError string
	// Status is how the process ended, in words: "" for exit status 0,
	// else "exited with status 1", "killed by signal killed", "did not
	// start: ...".
	Status string
	// Stopped is set when Stop reached the child, Killed when it was
	// killed at the stop bound.
	Stopped, Killed bool
}

// Runner carries out the daemon's children. Run returns when the child has
// ended. The production one (ExecRunner) runs this program in a process of
// its own; tests give the daemon a fake.
type Runner interface {
	Run(c Child) Exit
}

// ExecRunner runs each child as this program in a process group of its
// own, and reads its Result from a pipe given as file descriptor 3
// (EnvResultFD says so).
type ExecRunner struct {
	// Exe is this program; Config the policy file, as an absolute path.
	Exe, Config string
	// Env is added to the daemon's environment for each child.
	Env []string
	// Clock bounds the wait for a result a grandchild still holds open;
	// nil: System.
	Clock Clock
}

var _ Runner = (*ExecRunner)(nil)

// waitDelay is how long a child's output pipes (and its result channel)
// may stay open after it ended or was killed, a grandchild holding them,
// before they are closed.
const waitDelay = 5 * time.Second

// Run starts `Exe -c Config backup|drill ASSET` and waits for it.
func (r *ExecRunner) Run(c Child) Exit {
	args := []string{"-c", r.Config, c.Action, c.Asset}
	switch c.Action {
	case ActionDrill:
		args = append(args, "--trigger", "schedule")
	case ActionPlatform:
		args = []string{"-c", r.Config, "drill", "--platform", "--trigger", "schedule"}
	}
	cmd := exec.Command(r.Exe, args...)
	cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		return Exit{Status: "did not start: " + err.Error()}
	}
	defer pr.Close()
	cmd.ExtraFiles = []*os.File{pw} // descriptor 3
	cmd.Env = append(append(os.Environ(), r.Env...), EnvResultFD+"=3")
	docs := make(chan []byte, 1)
	go func() {
		doc, _ := io.ReadAll(io.LimitReader(pr, maxResult))
		io.Copy(io.Discard, pr) // a child writing more must not block
		docs <- doc
	}()
	st := supervise(cmd, c.Stop, c.Kill, nil, false, r.clock())
	pw.Close() // the child's copy is closed: the reader sees the end
	var doc []byte
	t := r.clock().NewTimer(r.clock().Now().Add(waitDelay))
	select {
	case doc = <-docs:
	case <-t.C():
		pr.Close()
		doc = <-docs
	}
	t.Stop()
	x := Exit{Stopped: st.stopped, Killed: st.killed}
	if st.err != nil {
		x.Status = st.describe(0)
	}
	res, derr := decodeResult(doc)
	x.Result = res
	if derr != nil {
		x.ResultError = derr.Error()
	}
	return x
}

func (r *ExecRunner) clock() Clock {
	if r.Clock == nil {
		return System
	}
	return r.Clock
}

// procStatus is how a supervised process ended.
type procStatus struct {
	err      error // nil: exit status 0
	stopped  bool  // asked to stop (SIGTERM)
	killed   bool  // killed at the stop bound
	timedOut bool  // killed at its timeout
}

func (s procStatus) describe(timeout time.Duration) string {
	switch {
	case s.timedOut:
		return fmt.Sprintf("timed out after %s", timeout)
	case s.killed:
		return "killed at the stop bound"
	case s.err == nil:
		return "succeeded"
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return "did not start: " + oneLine(s.err.Error())
}

// supervise starts cmd in a process group of its own and waits for it to
// end. When stop is closed it sends SIGTERM (to the group when group is
// set, else to the process alone); when kill is closed or the clock
// reaches deadline (when not nil) it sends SIGKILL to the whole group.
func supervise(cmd *exec.Cmd, stop, kill <-chan struct{}, deadline *time.Time, group bool, clock Clock) procStatus {
	// Its own group: a Ctrl-C at the terminal reaches the daemon only,
	// which decides, and SIGKILL can take the child's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		return procStatus{err: err}
	}
	pid := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var expired <-chan time.Time
	if deadline != nil {
		t := clock.NewTimer(*deadline)
		defer t.Stop()
		expired = t.C()
	}
	var st procStatus
	for {
		select {
		case st.err = <-waited:
			return st
		case <-stop:
			st.stopped, stop = true, nil
			target := pid
			if group {
				target = -pid
			}
			syscall.Kill(target, syscall.SIGTERM)
		case <-kill:
			st.killed, kill = true, nil
			syscall.Kill(-pid, syscall.SIGKILL)
		case <-expired:
			st.timedOut, expired = true, nil
			syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}
