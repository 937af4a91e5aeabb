package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	// copyTargetWALFiles is the target: a copy lags its primary by
	// at most one WAL segment under pgbench -c 4.
	copyTargetWALFiles = 1
	// copyStatusTimeout bounds one `lifeboat status` call; a call that takes
	// longer counts as a failed sample.
	copyStatusTimeout = 30 * time.Second
	// copyCatchUpPoll is the pause between status calls while waiting for the
	// copy to catch up; short, because the catch-up time is what is measured.
	copyCatchUpPoll = 200 * time.Millisecond
)

// copyLagResult is how far Lifeboat's copy repository trailed its primary
// while pgbench ran, sampled with `lifeboat status --json` about once a
// second, and how long the copy took to catch up once the archiver had
// archived everything into the primary.
type copyLagResult struct {
	Repository     string `json:"repository"`
	Location       string `json:"location"` // the copy's directory or bucket
	PgbenchClients int    `json:"pgbench_clients"`
	PgbenchRate    int    `json:"pgbench_rate"` // 0: unthrottled
	// Samples counts the status calls during the pgbench window, failed ones
	// included; the figures below come from the successful ones.
	Samples         int     `json:"samples"`
	FailedSamples   int     `json:"failed_samples"`
	LastSampleError string  `json:"last_sample_error,omitempty"`
	MaxWALFiles     int     `json:"max_wal_files"`
	MedianWALFiles  float64 `json:"median_wal_files"`
	MaxWALSeconds   float64 `json:"max_wal_seconds"` // age of the oldest WAL file the copy lacked
	MaxQueueEntries int     `json:"max_queue_entries"`
	// StatusMedianMS is how long one status call took: the resolution of
	// the samples and of the catch-up time.
	StatusMedianMS float64 `json:"status_median_ms"`
	// AtDrain is the first sample after the archiver drained.
	AtDrain copyLagSample `json:"at_archiver_drain"`
	// CaughtUp says the copy lacked no WAL file and its queue was empty
	// within -drain-timeout of the archiver draining; CatchUpSeconds runs
	// from the drain to the end of the status call that first said so.
	CaughtUp       bool    `json:"caught_up"`
	CatchUpSeconds float64 `json:"catch_up_seconds"`
	CatchUpFailed  int     `json:"catch_up_failed_samples"`
	// QueueLastError is the queue's last-error as the last successful
	// sample showed it: why the background drainer last stopped.
	QueueLastError string `json:"queue_last_error,omitempty"`
	Target         int    `json:"target_wal_files"`
	Measured       bool   `json:"measured"`
	Pass           bool   `json:"pass"`

	walFiles  []int
	statusDur []float64
}

// copyLagSample is the copy's row of one `lifeboat status --json`.
type copyLagSample struct {
	WALFiles     int     `json:"wal_files"`
	WALSeconds   float64 `json:"wal_seconds"`
	QueueEntries int     `json:"queue_entries"`
	QueueError   string  `json:"queue_last_error,omitempty"`
}

// caughtUp reports whether the copy holds every WAL file of the primary and
// this host has nothing queued for it.
func (s copyLagSample) caughtUp() bool { return s.WALFiles == 0 && s.QueueEntries == 0 }

// parseCopyLag picks the row of the copy repository repo out of the output
// of `lifeboat status ASSET --json` (a list of rows, one per repository of
// the asset). A copy row that carries an error or no lag is an error: its
// numbers would read as "no lag".
func parseCopyLag(out []byte, repo string) (copyLagSample, error) {
	var rows []struct {
		Repository string `json:"repository"`
		Role       string `json:"role"`
		Error      string `json:"error"`
		Lag        *struct {
			WALFiles   int     `json:"wal_files"`
			WALSeconds float64 `json:"wal_seconds"`
			Queue      *struct {
				Entries   int    `json:"entries"`
				LastError string `json:"last_error"`
			} `json:"queue"`
		} `json:"lag"`
	}
	if err := json.Unmarshal(out, &rows); err != nil {
		return copyLagSample{}, fmt.Errorf("parse status JSON: %w", err)
	}
	for _, r := range rows {
		if r.Repository != repo {
			continue
		}
		switch {
		case r.Role != "copy":
			return copyLagSample{}, fmt.Errorf("status: repository %s has role %q, want copy", repo, r.Role)
		case r.Error != "":
			return copyLagSample{}, fmt.Errorf("status: repository %s: %s", repo, r.Error)
		case r.Lag == nil:
			return copyLagSample{}, fmt.Errorf("status: repository %s: no lag reported", repo)
		}
		s := copyLagSample{WALFiles: r.Lag.WALFiles, WALSeconds: r.Lag.WALSeconds}
		// No queue means this host never queued anything for the copy.
		if q := r.Lag.Queue; q != nil {
			s.QueueEntries, s.QueueError = q.Entries, q.LastError
		}
		return s, nil
	}
	return copyLagSample{}, fmt.Errorf("status: no row for repository %s", repo)
}

// copyLag runs `lifeboat status --json` once, as the bench user with the
// tool's environment, outside the page-cache drops and RSS sampling of the
// measured steps.
func (h *harness) copyLag(ctx context.Context, run int, t toolSpec) (copyLagSample, time.Duration, error) {
	r, err := h.r.run(ctx, cmdSpec{label: stepLabel(run, t.name, "copy-status"), path: t.bin, args: t.copyStatus,
		env: t.env, timeout: copyStatusTimeout})
	s, perr := parseCopyLag([]byte(r.Stdout), lifeboatCopyRepo)
	switch {
	case err != nil && (perr == nil || r.Stdout == ""):
		return s, r.Wall, err
	case perr != nil:
		return s, r.Wall, perr // names the row's error, which stderr only counts
	}
	return s, r.Wall, nil
}

// copySampler samples the copy's lag in the background during the pgbench
// window.
type copySampler struct {
	res  *copyLagResult
	stop chan struct{}
	wg   sync.WaitGroup
}

// startCopySampler starts sampling about once a second; a status call
// slower than that delays the next sample rather than overlapping it.
func (h *harness) startCopySampler(ctx context.Context, run int, t toolSpec) *copySampler {
	res := &copyLagResult{Repository: lifeboatCopyRepo, Location: h.copyLocation(t),
		PgbenchClients: h.cfg.pgbenchClients, PgbenchRate: h.cfg.pgbenchRate, Target: copyTargetWALFiles}
	cs := &copySampler{res: res, stop: make(chan struct{})}
	cs.wg.Add(1)
	go func() {
		defer cs.wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-cs.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			s, wall, err := h.copyLag(ctx, run, t)
			res.add(s, wall, err)
		}
	}()
	return cs
}

// finish stops sampling, letting a status call in flight complete (killing
// it would count a failed sample that is the harness's doing), and
// summarises the window.
func (cs *copySampler) finish() *copyLagResult {
	close(cs.stop)
	cs.wg.Wait()
	r := cs.res
	if n := len(r.walFiles); n > 0 {
		r.MaxWALFiles = slices.Max(r.walFiles)
		r.MedianWALFiles = medianInts(r.walFiles)
	}
	return r
}

// add records one sample of the pgbench window.
func (r *copyLagResult) add(s copyLagSample, wall time.Duration, err error) {
	r.Samples++
	r.statusDur = append(r.statusDur, float64(wall)/float64(time.Millisecond))
	if err != nil {
		r.FailedSamples++
		r.LastSampleError = err.Error()
		return
	}
	r.walFiles = append(r.walFiles, s.WALFiles)
	r.MaxWALSeconds = max(r.MaxWALSeconds, s.WALSeconds)
	r.MaxQueueEntries = max(r.MaxQueueEntries, s.QueueEntries)
	r.QueueLastError = s.QueueError
}

// catchUp polls the copy's lag after the archiver has drained until the copy
// lacks nothing and its queue is empty, or timeout.
func (h *harness) catchUp(ctx context.Context, run int, t toolSpec, r *copyLagResult, timeout time.Duration) {
	start := time.Now()
	first := true
	for ctx.Err() == nil {
		s, wall, err := h.copyLag(ctx, run, t)
		r.statusDur = append(r.statusDur, float64(wall)/float64(time.Millisecond))
		if err != nil {
			r.CatchUpFailed++
			r.LastSampleError = err.Error()
		} else {
			if first {
				r.AtDrain, first = s, false
			}
			r.QueueLastError = s.QueueError
			if s.caughtUp() {
				r.CaughtUp, r.CatchUpSeconds = true, time.Since(start).Seconds()
				break
			}
		}
		if time.Since(start) > timeout {
			r.CatchUpSeconds = time.Since(start).Seconds()
			break
		}
		time.Sleep(copyCatchUpPoll)
	}
	if len(r.statusDur) > 0 {
		d := slices.Clone(r.statusDur)
		slices.Sort(d)
		r.StatusMedianMS = percentile(d, 50)
	}
	r.Measured = r.Samples > r.FailedSamples
	r.Pass = r.Measured && r.MaxWALFiles <= r.Target
}

// copyLocation says where the copy repository lives, for the report.
func (h *harness) copyLocation(t toolSpec) string {
	if t.copyBucket != "" {
		return "bucket " + t.copyBucket + " on the same MinIO"
	}
	return "directory " + filepath.Join(h.cfg.root, "lb-copy")
}

// medianInts is the median of vals (the mean of the middle two for an even
// count); vals is not modified.
func medianInts(vals []int) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return float64(s[n/2-1]+s[n/2]) / 2
	}
	return float64(s[n/2])
}

// copyLagLine is the target line of the copy issue, from the run whose copy
// lagged most.
func copyLagLine(runs []toolResult) (ratioLine, bool) {
	var worst *copyLagResult
	for _, t := range runs {
		c := t.Copy
		if t.Tool != toolLifeboat || c == nil {
			continue
		}
		if worst == nil || !worst.Measured && c.Measured ||
			c.Measured && (c.MaxWALFiles > worst.MaxWALFiles || c.MaxWALFiles == worst.MaxWALFiles && c.MaxWALSeconds > worst.MaxWALSeconds) {
			worst = c
		}
	}
	if worst == nil {
		return ratioLine{}, false
	}
	c := worst
	load := "pgbench -c " + strconv.Itoa(c.PgbenchClients)
	if c.PgbenchRate > 0 {
		load += " -R " + strconv.Itoa(c.PgbenchRate)
	}
	l := ratioLine{Name: "copy lag lifeboat", Unit: "WAL files", Lifeboat: float64(c.MaxWALFiles),
		Target: float64(c.Target), Measured: c.Measured, Pass: c.Pass}
	if !c.Measured {
		l.Text = fmt.Sprintf("copy lag under %s: n/a, %d of %d status samples failed: %s (target <= %d) NOT MEASURED",
			load, c.FailedSamples, c.Samples, orDash(c.LastSampleError), c.Target)
		return l, true
	}
	caught := fmt.Sprintf("caught up %s s after the archiver", num(c.CatchUpSeconds))
	if !c.CaughtUp {
		caught = fmt.Sprintf("NOT caught up %s s after the archiver", num(c.CatchUpSeconds))
	}
	l.Text = fmt.Sprintf("copy lag under %s: max %d WAL files (target <= %d), median %s, max age %s s, %s",
		load, c.MaxWALFiles, c.Target, strconv.FormatFloat(c.MedianWALFiles, 'f', -1, 64), num(c.MaxWALSeconds), caught)
	if c.FailedSamples > 0 {
		l.Text += fmt.Sprintf(" (%d of %d samples failed)", c.FailedSamples, c.Samples)
	}
	l.Text += " " + passWord(l.Pass)
	return l, true
}
