package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// results is the whole report, also written as JSON.
type results struct {
	StartedAt       time.Time         `json:"started_at"`
	FinishedAt      time.Time         `json:"finished_at"`
	Flags           map[string]string `json:"flags"`
	Machine         machineInfo       `json:"machine"`
	Cluster         clusterInfo       `json:"cluster"`
	Storage         storageInfo       `json:"storage"`
	Runs            []toolResult      `json:"runs"`
	Summary         []ratioLine       `json:"summary"`
	DropCachesError string            `json:"drop_caches_error,omitempty"`
	Drill           *drillResults     `json:"drill,omitempty"` // with -drill, instead of Runs
}

func (c config) summary() map[string]string {
	return map[string]string{
		"root": c.root, "scale": strconv.Itoa(c.scale), "tx_rows": strconv.FormatInt(c.txRows, 10),
		"tools": strings.Join(c.tools, ","), "runs": strconv.Itoa(c.runs),
		"drop_caches": strconv.FormatBool(c.dropCaches), "pgbench_seconds": strconv.Itoa(c.pgbenchSeconds),
		"pgbench_clients": strconv.Itoa(c.pgbenchClients), "pgbench_rate": strconv.Itoa(c.pgbenchRate), "process_max": strconv.Itoa(c.processMax),
		"verify_restore": strconv.FormatBool(c.verifyRestore), "user": c.user, "storage": c.storage,
		"copy": strconv.FormatBool(c.copy), "drill": c.drill.String(),
	}
}

// ratioLine is one target from the project brief: a Lifeboat figure, the
// pgBackRest figure it is compared with, and whether the ratio meets target.
type ratioLine struct {
	Name       string  `json:"name"`
	Unit       string  `json:"unit"`
	Lifeboat   float64 `json:"lifeboat"`
	PgBackRest float64 `json:"pgbackrest,omitempty"`
	Ratio      float64 `json:"ratio,omitempty"`
	Target     float64 `json:"target"`
	Measured   bool    `json:"measured"`
	Pass       bool    `json:"pass"`
	Text       string  `json:"text"`
}

// metric picks one number from a tool's phase; ok is false when the step
// behind it did not succeed.
type metric struct {
	name, unit string
	target     float64
	get        func(toolResult) (float64, bool)
}

var ratioMetrics = []metric{
	{"full backup: wall", "s", 0.5, func(t toolResult) (float64, bool) { return t.Full.WallSeconds, t.Full.OK }},
	{"full backup: bytes", "MiB", 1.0, func(t toolResult) (float64, bool) { return mib(t.Full.Bytes), t.Full.OK }},
	{"incremental: bytes", "MiB", 0.1, func(t toolResult) (float64, bool) { return mib(t.Incr.Bytes), t.Incr.OK }},
	{"incremental: wall", "s", 0.5, func(t toolResult) (float64, bool) { return t.Incr.WallSeconds, t.Incr.OK }},
	{"restore: wall", "s", 1.0, func(t toolResult) (float64, bool) { return t.Restore.WallSeconds, t.Restore.OK }},
}

// s3Metrics are the targets of the S3 issue ("backup and restore to MinIO on
// loopback: wall <= 1.0 x pgBackRest to the same MinIO"), reported in addition
// to ratioMetrics when both tools wrote to MinIO.
var s3Metrics = []metric{
	{"s3 full backup: wall", "s", 1.0, ratioMetrics[0].get},
	{"s3 incremental: wall", "s", 1.0, ratioMetrics[3].get},
	{"s3 restore: wall", "s", 1.0, ratioMetrics[4].get},
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// summarise computes the target lines from the median over runs; storage
// (storageFS or storageS3) adds the S3 lines.
func summarise(runs []toolResult, storage string) []ratioLine {
	metrics := ratioMetrics
	if storage == storageS3 {
		metrics = append(append([]metric{}, ratioMetrics...), s3Metrics...)
	}
	var out []ratioLine
	for _, m := range metrics {
		lb, lbOK := medianOf(runs, toolLifeboat, m.get)
		pb, pbOK := medianOf(runs, toolPgBackRest, m.get)
		l := ratioLine{Name: m.name, Unit: m.unit, Lifeboat: lb, PgBackRest: pb, Target: m.target}
		what, _ := strings.CutPrefix(m.name[strings.Index(m.name, ":")+1:], " ")
		prefix := m.name[:strings.Index(m.name, ":")]
		switch {
		case lbOK && pbOK && pb > 0:
			l.Measured = true
			l.Ratio = lb / pb
			l.Pass = l.Ratio <= m.target
			l.Text = fmt.Sprintf("%s: %s lifeboat %s %s / pgbackrest %s %s = %.3f (target <= %g) %s",
				prefix, what, num(lb), m.unit, num(pb), m.unit, l.Ratio, m.target, passWord(l.Pass))
		default:
			l.Text = fmt.Sprintf("%s: %s lifeboat %s / pgbackrest %s (target <= %g) NOT MEASURED",
				prefix, what, orNA(lb, m.unit, lbOK), orNA(pb, m.unit, pbOK), m.target)
		}
		out = append(out, l)
	}

	// Peak RSS is an absolute target: the largest single Lifeboat process
	// over both backups and every run.
	var peak float64
	var seen bool
	for _, t := range runs {
		if t.Tool != toolLifeboat {
			continue
		}
		for _, s := range []stepResult{t.Full, t.Incr} {
			if s.OK {
				peak, seen = max(peak, float64(s.MaxRSSKiB)/1024), true
			}
		}
	}
	l := ratioLine{Name: "peak RSS lifeboat backup", Unit: "MiB", Lifeboat: peak, Target: 256, Measured: seen, Pass: seen && peak <= 256}
	if seen {
		l.Text = fmt.Sprintf("peak RSS lifeboat backup: %s MiB (target <= 256) %s", num(peak), passWord(l.Pass))
	} else {
		l.Text = "peak RSS lifeboat backup: n/a (target <= 256) NOT MEASURED"
	}
	out = append(out, l)
	if l, ok := copyLagLine(runs); ok {
		out = append(out, l)
	}
	return out
}

func medianOf(runs []toolResult, tool string, get func(toolResult) (float64, bool)) (float64, bool) {
	var vals []float64
	for _, t := range runs {
		if t.Tool != tool {
			continue
		}
		if v, ok := get(t); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) == 0 {
		return 0, false
	}
	slices.Sort(vals)
	if n := len(vals); n%2 == 0 {
		return (vals[n/2-1] + vals[n/2]) / 2, true
	}
	return vals[len(vals)/2], true
}

func passWord(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func orNA(v float64, unit string, ok bool) string {
	if !ok {
		return "n/a (failed or not run)"
	}
	return num(v) + " " + unit
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit && b > -unit {
		return fmt.Sprintf("%d B", b)
	}
	v, i := float64(b), 0
	for ; (v >= unit || v <= -unit) && i < 4; i++ {
		v /= unit
	}
	return fmt.Sprintf("%.2f %s", v, []string{"B", "KiB", "MiB", "GiB", "TiB"}[i])
}

func humanKiB(k int64) string { return humanBytes(k * 1024) }

// printReport writes the human-readable report.
func printReport(w io.Writer, r *results) {
	m := r.Machine
	fmt.Fprintln(w, "== machine ==")
	fmt.Fprintf(w, "nproc %d, memory %s, CPU %s, kernel %s, %s\n", m.NProc, humanBytes(m.MemTotalBytes), m.CPUModel, m.Kernel, m.OS)
	rot := map[string]string{"0": "non-rotational", "1": "rotational"}[m.Disk.Rotational]
	if rot == "" {
		rot = "rotational unknown"
	}
	fmt.Fprintf(w, "bench root %s on %s (%s at %s, %s, %s free, %s)\n", m.Root, m.Disk.Device, m.Disk.FSType,
		m.Disk.MountPoint, humanBytes(m.Disk.SizeBytes), humanBytes(m.Disk.FreeBytes), rot)
	fmt.Fprintf(w, "%s; pgBackRest: %s; lifeboat: %s; %s; tools run as %s\n", m.PGVersion,
		orDash(m.PgBackRestVersion), orDash(m.LifeboatVersion), m.GoVersion, m.User)
	if r.DropCachesError != "" {
		fmt.Fprintf(w, "page cache NOT dropped: %s\n", r.DropCachesError)
	} else {
		fmt.Fprintf(w, "page cache dropped before each measured step: %s\n", r.Flags["drop_caches"])
	}
	if st := r.Storage; st.Kind == storageS3 {
		fmt.Fprintf(w, "repositories: S3, MinIO %s at %s over TLS (bench CA), one bucket per tool; bytes: %s\n",
			st.MinIOVersion, st.Endpoint, st.BytesMethod)
	} else {
		fmt.Fprintf(w, "repositories: local directories in the bench root; bytes: %s\n", st.BytesMethod)
	}

	c := r.Cluster
	fmt.Fprintln(w, "\n== reference cluster ==")
	how := fmt.Sprintf("built in %.0f s", c.BuildSeconds)
	if c.Reused {
		how = fmt.Sprintf("reused (built %s in %.0f s)", c.BuiltAt.Format("2006-01-02 15:04"), c.BuildSeconds)
	}
	fmt.Fprintf(w, "pgbench scale %d + %d transactions rows: pg_database_size %s, PGDATA %s; %s\n",
		c.Scale, c.TxRows, humanBytes(c.DatabaseBytes), humanBytes(c.DataDirBytes), how)
	for _, t := range c.Tables {
		if t.TotalBytes >= 1<<20 {
			fmt.Fprintf(w, "  %-20s %12d rows %12s\n", t.Name, t.Rows, humanBytes(t.TotalBytes))
		}
	}
	if len(r.Runs) == 0 {
		return
	}

	fmt.Fprintln(w, "\n== steps ==")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\ttool\tstep\twall s\tbytes\tRSS top MiB\tRSS tree MiB\tcache dropped\tresult\t")
	for _, t := range r.Runs {
		for _, s := range []stepResult{t.Full, t.Incr, t.Restore} {
			if !s.Ran {
				continue
			}
			result := "ok"
			if !s.OK {
				result = "FAILED"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.2f\t%s\t%.1f\t%.1f\t%v\t%s\t\n", t.Run, t.Tool, stepTitle(s.Name), s.WallSeconds,
				humanBytes(s.Bytes), float64(s.MaxRSSKiB)/1024, float64(s.TreeRSSKiB)/1024, s.CachesDropped, result)
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "bytes: repository growth for backups; restored PGDATA size for restore.")
	fmt.Fprintln(w, "RSS top: largest single process (wait4 ru_maxrss); RSS tree: peak sampled sum over all processes of the tool.")

	fmt.Fprintln(w, "\n== workload window (pgbench between full and incremental) ==")
	for _, t := range r.Runs {
		if !t.Pgbench.Ran {
			continue
		}
		p, a, s := t.Pgbench, t.Archiver, t.WALPush
		fmt.Fprintf(w, "run %d %s: pgbench -N -c %d -T %d: %.0f tps, %d transactions; WAL archived meanwhile %s\n",
			t.Run, t.Tool, p.Clients, p.Seconds, p.TPS, p.Transactions, humanBytes(t.WindowWALBytes))
		fmt.Fprintf(w, "  wal-push: %d segments, median %.1f ms, p99 %.1f ms, max %.1f ms, %d failures\n",
			s.Segments, s.MedianMS, s.P99MS, s.MaxMS, s.Failures)
		fmt.Fprintf(w, "  archiver: lag at pgbench end %d segments (%d .ready), max during window %d segments / %d .ready, drained in %.1f s%s\n",
			a.AtEnd.LagSegments, a.AtEnd.ReadyFiles, a.MaxLagSegments, a.MaxReadyFiles, a.DrainSeconds, map[bool]string{false: " (NOT drained)", true: ""}[a.Drained])
		if c := t.Copy; c != nil {
			fmt.Fprintf(w, "  copy %s (%s): %d status samples (%d failed), one call %.0f ms median; max %d WAL files missing, max %d queued; %d missing / %d queued when the archiver drained; %s\n",
				c.Repository, c.Location, c.Samples, c.FailedSamples, c.StatusMedianMS, c.MaxWALFiles, c.MaxQueueEntries,
				c.AtDrain.WALFiles, c.AtDrain.QueueEntries, map[bool]string{true: fmt.Sprintf("caught up %.1f s later", c.CatchUpSeconds),
					false: fmt.Sprintf("NOT caught up after %.1f s", c.CatchUpSeconds)}[c.CaughtUp])
			if c.LastSampleError != "" {
				fmt.Fprintf(w, "  copy status: last failed sample: %s\n", c.LastSampleError)
			}
			if c.QueueLastError != "" {
				fmt.Fprintf(w, "  copy queue last error: %s\n", c.QueueLastError)
			}
		}
		if !p.OK {
			fmt.Fprintf(w, "  pgbench FAILED: %s\n", p.Error)
		}
	}

	fmt.Fprintln(w, "\n== restore verification ==")
	for _, t := range r.Runs {
		switch v := t.Verify; {
		case !v.Ran:
			fmt.Fprintf(w, "run %d %s: not verified\n", t.Run, t.Tool)
		case v.OK:
			fmt.Fprintf(w, "run %d %s: restored cluster started in %.1f s and matches the source (%s)\n", t.Run, t.Tool, v.StartSeconds, v.Got)
		default:
			fmt.Fprintf(w, "run %d %s: FAILED: %s\n", t.Run, t.Tool, v.Error)
		}
	}

	var failed bool
	for _, t := range r.Runs {
		if t.Error == "" {
			continue
		}
		if !failed {
			fmt.Fprintln(w, "\n== failures ==")
			failed = true
		}
		fmt.Fprintf(w, "run %d %s: %s\n", t.Run, t.Tool, t.Error)
		for _, s := range []stepResult{t.Init, t.Full, t.Incr, t.Restore} {
			if s.Ran && !s.OK && s.Stderr != "" {
				fmt.Fprintf(w, "  %s stderr:\n", s.Name)
				for _, l := range lastLines(s.Stderr, 15) {
					fmt.Fprintf(w, "    %s\n", l)
				}
			}
		}
	}

	fmt.Fprintf(w, "\n== targets (lifeboat / pgbackrest, median over %s run(s), storage %s) ==\n", r.Flags["runs"], orDash(r.Storage.Kind))
	for _, l := range r.Summary {
		fmt.Fprintln(w, l.Text)
	}
	for _, t := range r.Runs {
		if t.Tool == toolLifeboat && t.Pgbench.Ran {
			fmt.Fprintf(w, "wal-push lifeboat run %d: median %.1f ms, p99 %.1f ms over %d segments; archiver lag at pgbench end %d segments, max %d during the window\n",
				t.Run, t.WALPush.MedianMS, t.WALPush.P99MS, t.WALPush.Segments, t.Archiver.AtEnd.LagSegments, t.Archiver.MaxLagSegments)
		}
	}
}

func stepTitle(name string) string {
	switch name {
	case "full":
		return "full backup"
	case "incr":
		return "incremental"
	}
	return name
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func lastLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
