package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// job is one run of lifeboat serve: pre hook, backup, post hook.
type job struct {
	// id and started are the loop's to read while the run goes on; rec
	// belongs to the run's goroutine until it is handed back on done.
	id      int64
	started time.Time
	rec     catalog.Run
	hooks   policy.Hooks
	// killed is set when the stop bound was up and the run was killed.
	killed bool
	// drill is set for a scheduled drill (rec.Asset is the asset's drill
	// key), report is its report once it ran.
	drill  bool
	report *evidence.DrillReport
}

// outputLimit bounds what is kept of each output of a run (the backup's
// standard output, its standard error, the hooks' together): the start and
// the end, which hold the summary and the error.
const outputLimit = 64 << 10

// waitDelay is how long a child's output pipes may stay open after it
// ended or was killed (a grandchild holding them) before they are closed.
const waitDelay = 5 * time.Second

// start records a run and starts it in its own goroutine.
func (d *daemon) start(r scheduler.Run) {
	name, isDrill := strings.CutSuffix(r.Asset, drillSuffix)
	a, err := d.pol.Asset(name)
	if err != nil { // gone from the policy since it was due
		d.sched.Done(r.Asset)
		return
	}
	j := &job{hooks: a.Hooks, rec: catalog.Run{Asset: r.Asset, Kind: string(a.Kind), Trigger: string(r.Trigger),
		Slot: r.Slot, Start: time.Now(), Result: catalog.Running}, drill: isDrill}
	if isDrill {
		j.hooks, j.rec.Kind = policy.Hooks{}, "drill"
	}
	if err := d.cat.Insert(context.Background(), &j.rec); err != nil {
		// A backup matters more than its record: run it anyway, and try
		// to record it whole at the end.
		d.log.Error("record run start", "asset", a.Name, "error", oneLine(err))
	}
	j.id, j.started = j.rec.ID, j.rec.Start
	attrs := []any{"asset", a.Name, "kind", a.Kind, "run", j.rec.ID, "trigger", r.Trigger, "slot", r.Slot.Format(time.RFC3339)}
	if r.Missed > 0 {
		attrs = append(attrs, "missed_slots", r.Missed)
	}
	d.log.Info("run started", attrs...)
	d.running[r.Asset] = j
	go func() {
		d.execute(j)
		j.rec.End = time.Now()
		var err error
		if j.rec.ID != 0 {
			err = d.cat.Update(context.Background(), &j.rec)
		} else {
			err = d.cat.Insert(context.Background(), &j.rec)
		}
		if err != nil {
			d.log.Error("record run end", "asset", j.rec.Asset, "error", oneLine(err))
		}
		d.done <- j
	}()
}

// execute runs the pre hook, the backup unless the hook failed, and the
// post hook whatever happened, filling in j.rec.
func (d *daemon) execute(j *job) {
	if j.drill {
		d.drill(j)
		return
	}
	hookOut := newOutputBuffer(outputLimit)
	defer func() { j.rec.HookOutput = hookOut.String() }()
	timeout := j.hooks.Timeout.Std()
	if timeout <= 0 {
		timeout = policy.DefaultHookTimeout
	}
	env := d.hookEnv(j)
	if j.hooks.Pre != "" {
		fmt.Fprintln(hookOut, "--- pre hook ---")
		st := d.runHook(j.hooks.Pre, env, hookOut, d.stop, timeout)
		if st.err != nil {
			j.killed = st.killed
			j.rec.Result, j.rec.Error = catalog.Failed, "pre hook "+st.describe(timeout)
			if st.stopped || st.killed {
				j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped during the pre hook"
			} else if line := lastLine(hookOut.tailString()); line != "" && line != "--- pre hook ---" {
				j.rec.Error += ": " + line
			}
		}
	}
	if j.rec.Result == catalog.Running {
		select {
		case <-d.stop:
			j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped before the backup started"
		default:
			d.backup(j)
		}
	}
	if j.hooks.Post != "" {
		env = append(env, "LIFEBOAT_RESULT="+string(j.rec.Result), "LIFEBOAT_ERROR="+j.rec.Error,
			"LIFEBOAT_SNAPSHOT="+j.rec.Snapshot, "LIFEBOAT_BYTES="+strconv.FormatInt(j.rec.Bytes, 10),
			"LIFEBOAT_BYTES_STORED="+strconv.FormatInt(j.rec.BytesStored, 10))
		fmt.Fprintln(hookOut, "--- post hook ---")
		// The post hook runs even during a shutdown (it may report the
		// abort); only the stop bound cuts it short.
		st := d.runHook(j.hooks.Post, env, hookOut, nil, timeout)
		if st.err != nil {
			j.killed = j.killed || st.killed
			fmt.Fprintf(hookOut, "--- post hook %s ---\n", st.describe(timeout))
			d.log.Warn("post hook failed", "asset", j.rec.Asset, "run", j.rec.ID, "error", st.describe(timeout))
		}
	}
}

// hookEnv is what the hooks find in their environment besides the
// daemon's own.
func (d *daemon) hookEnv(j *job) []string {
	env := append(os.Environ(), "LIFEBOAT_ASSET="+j.rec.Asset, "LIFEBOAT_KIND="+j.rec.Kind,
		"LIFEBOAT_TRIGGER="+j.rec.Trigger, "LIFEBOAT_RUN_ID="+strconv.FormatInt(j.rec.ID, 10), "LIFEBOAT_CONFIG="+d.config)
	if !j.rec.Slot.IsZero() {
		env = append(env, "LIFEBOAT_SLOT="+j.rec.Slot.Format(time.RFC3339))
	}
	return env
}

func (d *daemon) runHook(script string, env []string, out *outputBuffer, stop <-chan struct{}, timeout time.Duration) procStatus {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	// A shell does not pass signals on to what it runs: the whole group
	// is signalled.
	return supervise(cmd, stop, d.kill, timeout, true)
}

// backup runs `lifeboat backup ASSET --json` as a child and reads its
// result: the snapshot from its JSON line, the error from its last line.
func (d *daemon) backup(j *job) {
	stdout, stderr := newOutputBuffer(outputLimit), newOutputBuffer(outputLimit)
	cmd := exec.Command(d.exe, "-c", d.config, "backup", j.rec.Asset, "--json")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(), envServeRun+"=1")
	// Only the child gets SIGTERM: it cancels what it started and records
	// nothing; its process group is killed only at the stop bound.
	st := supervise(cmd, d.stop, d.kill, 0, false)
	j.killed = st.killed
	out := stdout.String()
	var rest []string
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), outputLimit)
	for sc.Scan() {
		var row snapshotRow
		if line := sc.Text(); strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &row) == nil && row.ID != "" {
			j.rec.Snapshot, j.rec.Bytes, j.rec.BytesStored = row.ID, row.BytesTotal, row.BytesStored
		} else {
			rest = append(rest, line)
		}
	}
	j.rec.Output = strings.Join(rest, "\n")
	if errOut := stderr.String(); errOut != "" {
		if j.rec.Output != "" {
			j.rec.Output += "\n"
		}
		j.rec.Output += errOut
	}
	if st.err == nil {
		j.rec.Result = catalog.OK
		return
	}
	msg := st.describe(0)
	if line := lastLine(stderr.tailString()); strings.HasPrefix(line, "lifeboat: ") {
		msg = strings.TrimPrefix(line, "lifeboat: ")
	}
	j.rec.Result, j.rec.Error = catalog.Failed, msg
	if st.stopped || st.killed {
		j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped: "+msg
	}
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
	return oneLine(s.err)
}

// supervise starts cmd in a process group of its own and waits for it to
// end. When stop is closed it sends SIGTERM (to the group when group is
// set, else to the process alone); when kill is closed or timeout (if
// positive) passes it sends SIGKILL to the whole group.
func supervise(cmd *exec.Cmd, stop, kill <-chan struct{}, timeout time.Duration, group bool) procStatus {
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
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
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

// outputBuffer keeps the first and the last bytes written to it, up to a
// limit, and counts what it left out between them.
type outputBuffer struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	limit   int
	dropped int64
}

func newOutputBuffer(limit int) *outputBuffer { return &outputBuffer{limit: limit} }

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if room := b.limit/4 - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head, p = append(b.head, p[:k]...), p[k:]
	}
	b.tail = append(b.tail, p...)
	// Trimmed in batches, so a chatty child costs amortised copies.
	if keep := b.limit - b.limit/4; len(b.tail) > 2*keep {
		cut := len(b.tail) - keep
		b.dropped += int64(cut)
		b.tail = append([]byte(nil), b.tail[cut:]...)
	}
	return n, nil
}

// String is the kept output, with a marker where bytes were left out.
func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	tail, dropped := b.tail, b.dropped
	if keep := b.limit - b.limit/4; len(tail) > keep {
		dropped += int64(len(tail) - keep)
		tail = tail[len(tail)-keep:]
	}
	if dropped == 0 {
		return string(b.head) + string(tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes left out ...]\n%s", b.head, dropped, tail)
}

// tailString is the end of the output, where the error line is.
func (b *outputBuffer) tailString() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tail) > 0 {
		return string(b.tail)
	}
	return string(b.head)
}

// lastLine is the last non-empty line of s, trimmed.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
