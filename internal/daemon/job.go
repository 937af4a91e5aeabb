package daemon

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/childenv"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// job is one run of the daemon: pre hook, child (backup or drill), post
// hook.
type job struct {
	// id and started are the loop's to read while the run goes on; the
	// rest belongs to the run's goroutine until it is handed back on done.
	id      int64
	started time.Time
	rec     catalog.Run
	action  string // ActionBackup or ActionDrill
	asset   string // rec.Asset without the drill suffix
	hooks   policy.Hooks
	// killed is set when the stop bound was up and the run was killed.
	killed bool
	// report is a drill's report, once it ran.
	report *evidence.DrillReport
}

// start records a run and starts it in its own goroutine.
func (d *Daemon) start(r scheduler.Run) {
	name, isDrill := strings.CutSuffix(r.Asset, DrillSuffix)
	a := &policy.Asset{}
	if r.Asset != PlatformKey {
		var err error
		if a, err = d.pol.Asset(name); err != nil { // gone from the policy since it was due
			d.sched.Done(r.Asset)
			return
		}
	}
	j := &job{action: ActionBackup, asset: name, hooks: a.Hooks, rec: catalog.Run{Asset: r.Asset, Kind: string(a.Kind),
		Trigger: string(r.Trigger), Slot: r.Slot, Start: d.clock.Now(), Result: catalog.Running}}
	switch {
	case isDrill:
		j.action, j.hooks, j.rec.Kind = ActionDrill, policy.Hooks{}, "drill"
	case r.Asset == PlatformKey:
		j.action, j.asset, j.rec.Kind = ActionPlatform, "", "drill"
	}
	if err := d.cat.Insert(context.Background(), &j.rec); err != nil {
		// A backup matters more than its record: run it anyway, and try
		// to record it whole at the end.
		d.log.Error("record run start", "asset", r.Asset, "error", errLine(err))
	}
	j.id, j.started = j.rec.ID, j.rec.Start
	attrs := []any{"asset", r.Asset, "kind", j.rec.Kind, "run", j.rec.ID, "trigger", r.Trigger, "slot", r.Slot.Format(time.RFC3339)}
	if r.Missed > 0 {
		attrs = append(attrs, "missed_slots", r.Missed)
	}
	d.log.Info("run started", attrs...)
	d.running[r.Asset] = j
	go func() {
		d.execute(j)
		j.rec.End = d.clock.Now()
		var err error
		if j.rec.ID != 0 {
			err = d.cat.Update(context.Background(), &j.rec)
		} else {
			err = d.cat.Insert(context.Background(), &j.rec)
		}
		if err != nil {
			d.log.Error("record run end", "asset", j.rec.Asset, "error", errLine(err))
		}
		d.done <- j
	}()
}

// execute runs the pre hook, the child unless the hook failed, and the
// post hook whatever happened, filling in j.rec. Drills have no hooks.
func (d *Daemon) execute(j *job) {
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
			j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped before the "+j.action+" started"
		default:
			d.runChild(j)
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

// hookEnv is the hooks' environment: the allow-listed part of the
// daemon's (childenv.Base: PATH, HOME, locale, TZ), never its storage
// keys, passphrases or alert secrets, and what Lifeboat tells them.
func (d *Daemon) hookEnv(j *job) []string {
	env := childenv.Base("LIFEBOAT_ASSET="+j.rec.Asset, "LIFEBOAT_KIND="+j.rec.Kind,
		"LIFEBOAT_TRIGGER="+j.rec.Trigger, "LIFEBOAT_RUN_ID="+strconv.FormatInt(j.rec.ID, 10), "LIFEBOAT_CONFIG="+d.cfg.ConfigPath)
	if !j.rec.Slot.IsZero() {
		env = append(env, "LIFEBOAT_SLOT="+j.rec.Slot.Format(time.RFC3339))
	}
	return env
}

// runHook runs a hook script; the clock bounds it by timeout.
func (d *Daemon) runHook(script string, env []string, out *outputBuffer, stop <-chan struct{}, timeout time.Duration) procStatus {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, out, out
	// A shell does not pass signals on to what it runs: the whole group
	// is signalled.
	deadline := d.clock.Now().Add(timeout)
	return supervise(cmd, stop, d.kill, &deadline, true, d.clock)
}

// runChild hands the backup or drill to the runner and records what it
// reported.
func (d *Daemon) runChild(j *job) {
	stdout, stderr := newOutputBuffer(outputLimit), newOutputBuffer(outputLimit)
	x := d.cfg.Runner.Run(Child{Action: j.action, Asset: j.asset, Stdout: stdout, Stderr: stderr, Stop: d.stop, Kill: d.kill})
	j.killed = x.Killed
	j.rec.Output = stdout.String()
	if errOut := stderr.String(); errOut != "" {
		if j.rec.Output != "" && !strings.HasSuffix(j.rec.Output, "\n") {
			j.rec.Output += "\n"
		}
		j.rec.Output += errOut
	}
	j.rec.Output = strings.TrimSuffix(j.rec.Output, "\n")
	settle(j, x)
}

// settle fills in a run's result from its child's exit. The child's
// Result is the record; a child that reported none (it crashed, or was
// killed) failed with its exit status. A run the daemon asked to stop and
// that did not succeed is aborted.
func settle(j *job, x Exit) {
	if res := x.Result; res != nil {
		j.rec.Result, j.rec.Error = res.Result, res.Error
		j.rec.Snapshot, j.rec.Bytes, j.rec.BytesStored = res.Snapshot, res.Bytes, res.BytesStored
		j.report = res.Drill
		if res.Result == catalog.OK && x.Status != "" {
			j.rec.Result, j.rec.Error = catalog.Failed, j.action+" reported success, then "+x.Status
		}
	} else {
		j.rec.Result = catalog.Failed
		switch {
		case x.Status == "":
			j.rec.Error = j.action + " exited without reporting a result"
		default:
			j.rec.Error = j.action + " " + x.Status
			if x.Killed {
				j.rec.Error = x.Status
			}
		}
		if x.ResultError != "" {
			j.rec.Error += " (" + x.ResultError + ")"
		}
	}
	if (x.Stopped || x.Killed) && j.rec.Result != catalog.OK {
		j.rec.Result, j.rec.Error = catalog.Aborted, "the daemon stopped: "+j.rec.Error
	}
}
