package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// runner starts child processes as the benchmark's unprivileged user and
// measures them. One runner is shared by the cluster, both tools and pgbench so
// every child sees the same environment.
type runner struct {
	cred   *syscall.Credential // nil when the harness already runs unprivileged
	env    []string
	logDir string // full stdout/stderr of every measured command lands here
}

// cmdSpec describes one child process.
type cmdSpec struct {
	label   string // file-name-safe; names the log file
	path    string
	args    []string
	dir     string
	env     []string // added to the runner's environment
	timeout time.Duration
	sample  bool // sample the RSS of the whole process tree while it runs
}

// execResult is what one child cost.
type execResult struct {
	Wall time.Duration
	// MaxRSSKiB is ru_maxrss from wait4(2). Linux fills it with RUSAGE_BOTH
	// semantics for the reaped child: the largest peak RSS of the child itself
	// or of any descendant it waited for. It is a per-process maximum, never a
	// sum, so a tool that forks workers (pgBackRest process-max) reports its
	// largest single process here.
	MaxRSSKiB int64
	// TreeRSSKiB is the largest sum of RSS over the child and all its live
	// descendants, sampled from /proc every 100 ms. It catches concurrent
	// workers that MaxRSSKiB cannot add up, but can miss spikes shorter than
	// the sampling interval; shared pages are counted once per process.
	TreeRSSKiB int64
	ExitCode   int
	Stdout     string
	Stderr     string // the last stderrTail bytes
}

const stderrTail = 4096

// run starts spec, waits for it and returns its cost. A non-zero exit is an
// error that carries the last line of stderr; the result is filled either way.
func (r *runner) run(ctx context.Context, spec cmdSpec) (execResult, error) {
	if spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, spec.path, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = append(append([]string{}, r.env...), spec.env...)
	// A process group of its own lets a timeout kill the workers too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.cred}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second

	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	outs := []io.Writer{&stdout}
	errs := []io.Writer{stderr}
	if r.logDir != "" && spec.label != "" {
		f, err := os.OpenFile(filepath.Join(r.logDir, spec.label+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return execResult{}, fmt.Errorf("open log for %s: %w", spec.label, err)
		}
		defer f.Close()
		fmt.Fprintf(f, "### %s %s %s\n", time.Now().Format(time.RFC3339), spec.path, strings.Join(spec.args, " "))
		outs = append(outs, f)
		errs = append(errs, f)
	}
	cmd.Stdout = io.MultiWriter(outs...)
	cmd.Stderr = io.MultiWriter(errs...)

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return execResult{ExitCode: -1, Stderr: err.Error()}, fmt.Errorf("start %s: %w", filepath.Base(spec.path), err)
	}
	var (
		wg       sync.WaitGroup
		treePeak int64
		stop     = make(chan struct{})
	)
	if spec.sample {
		wg.Add(1)
		go func() {
			defer wg.Done()
			treePeak = sampleTreeRSS(cmd.Process.Pid, stop)
		}()
	}
	waitErr := cmd.Wait()
	wall := time.Since(start)
	close(stop)
	wg.Wait()

	res := execResult{Wall: wall, TreeRSSKiB: treePeak, Stdout: stdout.String(), Stderr: stderr.String()}
	if st := cmd.ProcessState; st != nil {
		res.ExitCode = st.ExitCode()
		if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
			res.MaxRSSKiB = ru.Maxrss // KiB on Linux
		}
	}
	if waitErr != nil {
		if ctx.Err() != nil {
			return res, fmt.Errorf("%s: %w after %s (stderr: %s)", filepath.Base(spec.path), ctx.Err(), wall.Round(time.Second), lastLine(res.Stderr))
		}
		return res, fmt.Errorf("%s exited %d: %s", filepath.Base(spec.path), res.ExitCode, lastLine(res.Stderr))
	}
	return res, nil
}

// sampleTreeRSS polls /proc until stop closes and returns the largest sum of
// RSS (KiB) seen over root and its descendants.
func sampleTreeRSS(root int, stop <-chan struct{}) int64 {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var peak int64
	for {
		if v := treeRSS(root); v > peak {
			peak = v
		}
		select {
		case <-stop:
			return peak
		case <-tick.C:
		}
	}
}

// treeRSS sums the resident set of root and every process descended from it.
func treeRSS(root int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	type proc struct {
		ppid int
		rss  int64
	}
	procs := make(map[int]proc, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited between ReadDir and ReadFile
		}
		ppid, rssPages, ok := parseProcStat(string(b))
		if !ok {
			continue
		}
		procs[pid] = proc{ppid: ppid, rss: rssPages * int64(os.Getpagesize()) / 1024}
	}
	children := make(map[int][]int, len(procs))
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	var sum int64
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		sum += procs[pid].rss
		queue = append(queue, children[pid]...)
	}
	return sum
}

// parseProcStat extracts ppid (field 4) and rss in pages (field 24) from a
// /proc/<pid>/stat line. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from the last ')'.
func parseProcStat(line string) (ppid int, rssPages int64, ok bool) {
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(line[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 22 {
		return 0, 0, false
	}
	p, err1 := strconv.Atoi(f[1])
	rss, err2 := strconv.ParseInt(f[21], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return p, rss, true
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lastLine returns the last non-empty line of s, for one-line error messages.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return "(no output)"
}

// dirBytes sums the sizes of the regular files under path, like `du -sb`
// without the directory entries. A missing path counts as zero bytes.
func dirBytes(path string) (int64, error) {
	var total int64
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while walking (a WAL segment being recycled)
		}
		if err != nil {
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	return total, nil
}

// dropCaches flushes dirty pages and empties the page cache so the next
// measured step reads from disk, whichever tool ran before it.
func dropCaches() error {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0o200); err != nil {
		return fmt.Errorf("drop page cache: %w", err)
	}
	return nil
}
