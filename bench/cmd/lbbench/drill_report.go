package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// drillTargets computes the target lines from the runs.
func drillTargets(res *drillResults, cfg config) []drillTarget {
	var out []drillTarget
	if cfg.drill.has(drillPartRTO) {
		var drills, bares, ratios []float64
		for _, r := range res.RTO {
			if r.Ratio > 0 {
				drills = append(drills, r.Drill.Report.RTOSeconds)
				bares = append(bares, r.Bare.TotalSeconds)
				ratios = append(ratios, r.Ratio)
			}
		}
		l := drillTarget{Name: "drill RTO / bare restore + recovery", Target: drillRTORatioTarget}
		if len(drills) == 0 {
			l.Text = fmt.Sprintf("drill RTO (random point) / bare restore + recovery of the same point: no run with both (target <= %g) NOT MEASURED", drillRTORatioTarget)
		} else {
			l.Measured = true
			l.Value, l.Reference = median(drills), median(bares)
			l.Ratio = l.Value / l.Reference
			l.Pass = l.Ratio <= drillRTORatioTarget
			l.Text = fmt.Sprintf("drill RTO (random point, median of %d): %s s / bare restore + recovery of the same point %s s = %.3f (median of the per-run ratios %.3f; target <= %g) %s",
				len(drills), num(l.Value), num(l.Reference), l.Ratio, median(ratios), drillRTORatioTarget, passWord(l.Pass))
		}
		out = append(out, l)
	}
	if cfg.drill.has(drillPartRPO) && res.RPO != nil {
		rp := res.RPO
		load := fmt.Sprintf("pgbench -N -c %d", rp.PgbenchClients)
		if rp.PgbenchRate > 0 {
			load += fmt.Sprintf(" -R %d", rp.PgbenchRate)
		}
		var rpos, bounds []float64
		var late int       // drills that replayed commits made after their own start
		var latest float64 // the latest of those commits, seconds after the start
		for _, d := range rp.Drills {
			if rep := d.Drill.Report; rep != nil && !rep.Recovered.IsZero() {
				rpos = append(rpos, rep.RPOSeconds)
				if d.RecoveredAfterTargetSeconds > 0 {
					late++
					latest = max(latest, d.RecoveredAfterTargetSeconds)
				}
			}
			if !d.ArchivedLastCommit.IsZero() && d.Drill.Report != nil {
				bounds = append(bounds, d.ArchiveRPOSeconds)
			}
		}
		l := drillTarget{Name: "RPO of latest drills", Target: drillRPOTarget}
		if len(rpos) == 0 {
			l.Text = fmt.Sprintf("RPO of latest drills under %s, archive_timeout %g s: no drill recovered (target <= %g s) NOT MEASURED", load, rp.ArchiveTimeoutSeconds, drillRPOTarget)
		} else {
			l.Value, l.Reference = slices.Max(rpos), median(rpos)
			l.Text = fmt.Sprintf("RPO of latest drills under %s, archive_timeout %g s: max %.3f s, median %.3f s over %d of %d drills (target <= %g s) ",
				load, rp.ArchiveTimeoutSeconds, l.Value, l.Reference, len(rpos), len(rp.Drills), drillRPOTarget)
			if late > 0 {
				// Such a drill went on replaying WAL archived after the
				// moment of failure it plays, and its report clamps the
				// negative loss to 0: the figure says nothing about the
				// data a failure at its start would have lost.
				l.Text += fmt.Sprintf("INVALID: %d of them replayed commits made up to %.1f s after their own start", late, latest)
			} else {
				l.Measured = true
				l.Pass = l.Value <= drillRPOTarget && len(rpos) == len(rp.Drills)
				l.Text += passWord(l.Pass)
			}
		}
		out = append(out, l)
		b := drillTarget{Name: "RPO bound from the archive at each drill's start", Target: drillRPOTarget}
		if len(bounds) == 0 {
			b.Text = "RPO a failure at each drill's start would cause (newest commit in the archived WAL): NOT MEASURED"
		} else {
			b.Measured = true
			b.Value, b.Reference = slices.Max(bounds), median(bounds)
			b.Pass = b.Value <= drillRPOTarget
			b.Text = fmt.Sprintf("RPO a failure at each drill's start would cause (newest commit in the archived WAL): max %.3f s, median %.3f s over %d drills (target <= %g s) %s",
				b.Value, b.Reference, len(bounds), drillRPOTarget, passWord(b.Pass))
		}
		out = append(out, b)
	}
	return out
}

// median of unsorted values; 0 for none.
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// phaseList renders a report's phases as "fetch 1.2 s, write 3.4 s, ...".
func phaseList(rep *evidence.DrillReport) string {
	var parts []string
	for _, p := range rep.Phases {
		parts = append(parts, fmt.Sprintf("%s %.1f s", p.Name, p.Seconds))
	}
	return strings.Join(parts, ", ")
}

// printDrillReport writes what -drill measured for a person.
func printDrillReport(w io.Writer, d *drillResults) {
	fmt.Fprintln(w, "\n== drill benchmark (issue 5) ==")
	fmt.Fprintf(w, "lifeboat %s; parts %s; policy tier %s (rpo %s, rto %s), validation query %q\n",
		orDash(d.Version), strings.Join(d.Parts, ","), drillTier, drillTierRPO, drillTierRTO, drillCheckName)
	if d.Full.Ran {
		fmt.Fprintf(w, "full backup: %.1f s, %s%s\n", d.Full.WallSeconds, humanBytes(d.Full.Bytes), map[bool]string{true: "", false: " FAILED: " + d.Full.Error}[d.Full.OK])
	}
	if wl := d.Workload; wl != nil {
		p := wl.Pgbench
		fmt.Fprintf(w, "WAL for the random points: pgbench -N -c %d -T %d: %.0f tps, %d transactions; archiver drained in %.1f s\n",
			p.Clients, p.Seconds, p.TPS, p.Transactions, wl.Archiver.DrainSeconds)
	}

	if len(d.RTO) > 0 {
		fmt.Fprintln(w, "\n-- RTO: random-point drill, then bare restore + recovery of its point (page cache dropped before each) --")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "run\ttarget\tdrill RTO s\tfetch\twrite\twal_replay\tstart\tchecks\tdrill wall s\t|\tbare restore\treplay\tstart\tbare total s\t|\tratio\tsame last commit\t")
		var cols [11][]float64
		for _, r := range d.RTO {
			rep := r.Drill.Report
			if rep == nil {
				fmt.Fprintf(tw, "%d\t-\tFAILED\t\t\t\t\t\t%.1f\t|\t\t\t\t\t|\t\t\t\n", r.Run, r.Drill.WallSeconds)
				continue
			}
			b := r.Bare
			vals := [11]float64{rep.RTOSeconds, rep.Phase(evidence.PhaseFetch), rep.Phase(evidence.PhaseWrite), rep.Phase(evidence.PhaseReplay),
				rep.Phase(evidence.PhaseStart), rep.Phase(evidence.PhaseChecks), r.Drill.WallSeconds,
				b.RestoreSeconds, b.ReplaySeconds, b.RecoverySeconds - b.ReplaySeconds, b.TotalSeconds}
			if r.Ratio > 0 {
				for i, v := range vals {
					cols[i] = append(cols[i], v)
				}
			}
			ratio, same := "-", "-"
			if r.Ratio > 0 {
				ratio = fmt.Sprintf("%.2f", r.Ratio)
			}
			switch {
			case !b.OK:
				same = "bare FAILED"
			case b.Recovered.Equal(rep.Recovered):
				same = "yes"
			default:
				same = fmt.Sprintf("no (bare %s)", fmtClock(b.Recovered))
			}
			drillRTO := fmt.Sprintf("%.2f", rep.RTOSeconds)
			if !r.Drill.passed() {
				drillRTO += " FAILED"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t|\t%.2f\t%.2f\t%.2f\t%.2f\t|\t%s\t%s\t\n",
				r.Run, fmtClock(rep.Target), drillRTO, vals[1], vals[2], vals[3], vals[4], vals[5], vals[6],
				vals[7], vals[8], vals[9], vals[10], ratio, same)
		}
		if len(cols[0]) > 0 {
			fmt.Fprintf(tw, "median\t\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t|\t%.2f\t%.2f\t%.2f\t%.2f\t|\t%.2f\t\t\n",
				median(cols[0]), median(cols[1]), median(cols[2]), median(cols[3]), median(cols[4]), median(cols[5]), median(cols[6]),
				median(cols[7]), median(cols[8]), median(cols[9]), median(cols[10]), median(cols[0])/median(cols[10]))
		}
		tw.Flush()
		if len(cols[0]) > 0 {
			// What the drill costs beyond the checks, to tell the restore's
			// overhead from the checks'.
			var noChecks, ratios []float64
			for i := range cols[0] {
				noChecks = append(noChecks, cols[0][i]-cols[5][i])
				ratios = append(ratios, (cols[0][i]-cols[5][i])/cols[10][i])
			}
			fmt.Fprintf(w, "drill RTO without the checks phase: median %.2f s, %.3f x the bare median (median of the per-run ratios %.3f)\n",
				median(noChecks), median(noChecks)/median(cols[10]), median(ratios))
		}
		fmt.Fprintln(w, "drill RTO = fetch + write + wal_replay + start + checks (the report's rto_seconds); drill wall = the whole command.")
		fmt.Fprintln(w, "bare: restore = `lifeboat restore --time T --archive-off`; replay = pg_ctl start until \"redo done\"; start = the rest, until the promoted server took a connection (hot_standby=off, as in the drill).")
		for _, r := range d.RTO {
			if r.Drill.Error != "" {
				fmt.Fprintf(w, "run %d drill: %s\n", r.Run, r.Drill.Error)
			}
			if r.Drill.Report != nil && r.Bare.Error != "" {
				fmt.Fprintf(w, "run %d bare: %s\n", r.Run, r.Bare.Error)
			}
		}
		if rep := d.RTO[0].Drill.Report; rep != nil {
			for _, c := range rep.Checks {
				fmt.Fprintf(w, "run 1 check %q: %.2f s, passed %v\n", c.Name, c.Seconds, c.Passed)
			}
		}
	}

	if rp := d.RPO; rp != nil {
		load := fmt.Sprintf("pgbench -N -c %d", rp.PgbenchClients)
		if rp.PgbenchRate > 0 {
			load += fmt.Sprintf(" -R %d", rp.PgbenchRate)
		}
		fmt.Fprintf(w, "\n-- RPO: latest drills under %s, archive_timeout %g s --\n", load, rp.ArchiveTimeoutSeconds)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "drill\tstarted\trpo_seconds\trecovered - start s\tarchive-side RPO s\tarchiver lag segs\tdrill RTO s\tresult\t")
		for i, x := range rp.Drills {
			rep := x.Drill.Report
			if rep == nil {
				fmt.Fprintf(tw, "%d\t%s\t-\t-\t-\t%d\t-\tFAILED\t\n", i+1, fmtClock(x.Drill.Started), x.ArchiveAtStart.LagSegments)
				continue
			}
			bound := "-"
			if !x.ArchivedLastCommit.IsZero() {
				bound = fmt.Sprintf("%.3f", x.ArchiveRPOSeconds)
			}
			result := "passed"
			if !rep.Passed {
				result = "FAILED"
			}
			fmt.Fprintf(tw, "%d\t%s\t%.3f\t%.3f\t%s\t%d\t%.1f\t%s\t\n", i+1, fmtClock(rep.Target), rep.RPOSeconds,
				x.RecoveredAfterTargetSeconds, bound, x.ArchiveAtStart.LagSegments, rep.RTOSeconds, result)
		}
		tw.Flush()
		fmt.Fprintln(w, "rpo_seconds: the drill's report (start minus the last commit replayed, 0 when that commit is later than the start).")
		fmt.Fprintln(w, "archive-side RPO: the drill's start minus the newest commit in the last WAL segment archived when it started (pg_waldump of the source's copy): what a failure at that moment would lose.")
		fmt.Fprintf(w, "pgbench %.0f s at %.0f commits/s; wal-push: %d segments, median %.1f ms, p99 %.1f ms, %d failed pushes; archiver failures %d\n",
			rp.Seconds, rp.TPS, rp.WALPush.Segments, rp.WALPush.MedianMS, rp.WALPush.P99MS, rp.WALPush.Failures, rp.ArchiveFailures)
		for i, x := range rp.Drills {
			if x.Drill.Error != "" {
				fmt.Fprintf(w, "drill %d: %s\n", i+1, x.Drill.Error)
			}
			if x.ArchiveError != "" {
				fmt.Fprintf(w, "drill %d archive side: %s\n", i+1, x.ArchiveError)
			}
		}
		if rp.Error != "" {
			fmt.Fprintf(w, "RPO part: %s\n", rp.Error)
		}
	}
	if d.Error != "" {
		fmt.Fprintf(w, "\nFAILED: %s\n", d.Error)
	}
	fmt.Fprintln(w, "\n== targets (issue 5) ==")
	for _, t := range d.Targets {
		fmt.Fprintln(w, t.Text)
	}
}

// fmtClock writes a time as UTC to the millisecond.
func fmtClock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000")
}
