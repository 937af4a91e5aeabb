package web

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
)

// Charts are drawn here, on the server, as inline SVG: the pages need no
// script and print as they show. Every text is escaped.

const (
	chartWidth = 900
	green      = "#2e8540"
	red        = "#c0262d"
	amber      = "#c77700"
	blue       = "#2b6cb0"
)

var esc = template.HTMLEscapeString

// timeline draws one repository's snapshots over time (bars as tall as
// the snapshot's size) and, for a kind with point-in-time recovery, the
// restorable window as a green band with what is not restorable since
// the first window began in red.
func timeline(ri app.RepositoryInfo, now time.Time) template.HTML {
	snaps := ri.Snapshots
	if len(snaps) == 0 && len(ri.Windows) == 0 {
		return ""
	}
	start := now
	for _, s := range snaps {
		if s.StartTime.Before(start) {
			start = s.StartTime
		}
	}
	for _, w := range ri.Windows {
		if !w.EarliestTime.IsZero() && w.EarliestTime.Before(start) {
			start = w.EarliestTime
		}
	}
	span := now.Sub(start)
	if span <= 0 {
		span = time.Minute
	}
	const left, right, top, barH, bandY, bandH, axisY = 10, 10, 10, 60, 80, 16, 112
	plot := float64(chartWidth - left - right)
	x := func(t time.Time) float64 { return left + plot*float64(t.Sub(start))/float64(span) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="%d" height="130" viewBox="0 0 %d 130">`, chartWidth, chartWidth)
	fmt.Fprintf(&b, `<title>Snapshots and restorable window of %s in %s</title>`, esc(ri.Status.Asset), esc(ri.Status.Repository))
	var biggest int64 = 1
	for _, s := range snaps {
		biggest = max(biggest, s.BytesTotal)
	}
	for _, s := range snaps {
		h := max(3, float64(barH)*float64(s.BytesTotal)/float64(biggest))
		fmt.Fprintf(&b, `<rect class="snapshot" x="%.1f" y="%.1f" width="3" height="%.1f" fill="%s"><title>%s %s, %s</title></rect>`,
			x(s.StopTime)-1.5, top+barH-h, h, blue, esc(shortID(s.ID)), esc(s.StopTime.UTC().Format(time.RFC3339)), esc(bytesText(s.BytesTotal)))
	}
	if len(ri.Windows) > 0 {
		// What lies outside every window, from the first window's start
		// to now, cannot be restored to: drawn red under the green.
		first := now
		for _, w := range ri.Windows {
			if w.EarliestTime.Before(first) {
				first = w.EarliestTime
			}
		}
		fmt.Fprintf(&b, `<rect class="gap" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>not restorable</title></rect>`,
			x(first), bandY, x(now)-x(first), bandH, red)
		for _, w := range ri.Windows {
			end := w.LatestTime
			if end.Before(w.EarliestTime) {
				end = w.EarliestTime
			}
			title := fmt.Sprintf("restorable on timeline %d from %s to %s", w.Timeline, w.EarliestTime.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
			if w.Gap != "" {
				title += "; WAL " + w.Gap + " is missing: recovery stops there"
			}
			fmt.Fprintf(&b, `<rect class="window" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`,
				x(w.EarliestTime), bandY, max(2, x(end)-x(w.EarliestTime)), bandH, green, esc(title))
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555"/>`, left, axisY-8, chartWidth-right, axisY-8)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11">%s</text>`, left, axisY+10, esc(start.UTC().Format("2006-01-02 15:04")))
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">now %s</text>`, chartWidth-right, axisY+10, esc(now.UTC().Format("2006-01-02 15:04")))
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var phaseColours = []string{"#2b6cb0", "#38a169", "#d69e2e", "#805ad5", "#dd6b20", "#319795", "#b83280", "#718096"}

// drillBars draws each drill as a horizontal bar of its phases, with the
// tier's RTO as a red line.
func drillBars(ds []DrillRow) template.HTML {
	if len(ds) == 0 {
		return ""
	}
	longest := 1.0
	colour := map[string]string{}
	var names []string
	for _, d := range ds {
		longest = max(longest, d.RTOSeconds)
	}
	// A target far beyond every measured RTO would squash the bars to
	// nothing: it is drawn only when within twice the longest, else
	// written after the bar.
	for _, d := range ds {
		if d.RTOTargetSeconds <= 2*longest {
			longest = max(longest, d.RTOTargetSeconds)
		}
	}
	for _, d := range ds {
		for _, p := range d.Phases {
			if _, ok := colour[p.Name]; !ok {
				colour[p.Name] = phaseColours[len(names)%len(phaseColours)]
				names = append(names, p.Name)
			}
		}
	}
	const label, rowH, legendH = 170, 22, 24
	plot := float64(chartWidth - label - 20)
	w := func(s float64) float64 { return plot * s / longest }
	height := len(ds)*rowH + legendH + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="%d" height="%d" viewBox="0 0 %d %d">`, chartWidth, height, chartWidth, height)
	b.WriteString(`<title>Drills: recovery time by phase</title>`)
	for i, d := range ds {
		y := i*rowH + 4
		verdict := "passed"
		if d.Aborted {
			verdict = "aborted"
		} else if !d.Passed {
			verdict = "failed"
		}
		fmt.Fprintf(&b, `<text x="0" y="%d" font-size="11">%s %s</text>`, y+13, esc(d.Started.UTC().Format("2006-01-02 15:04")), esc(verdict))
		at := float64(label)
		for _, p := range d.Phases {
			fmt.Fprintf(&b, `<rect class="phase" x="%.1f" y="%d" width="%.1f" height="16" fill="%s"><title>%s: %s</title></rect>`,
				at, y, w(p.Seconds), colour[p.Name], esc(p.Name), esc(seconds(p.Seconds)))
			at += w(p.Seconds)
		}
		note := "RTO " + seconds(d.RTOSeconds)
		if d.RTOTargetSeconds > longest {
			note += ", target " + seconds(d.RTOTargetSeconds)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11">%s</text>`, at+4, y+13, esc(note))
		if d.RTOTargetSeconds > 0 && d.RTOTargetSeconds <= longest {
			tx := float64(label) + w(d.RTOTargetSeconds)
			fmt.Fprintf(&b, `<line class="target" x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2"><title>RTO target %s</title></line>`,
				tx, y-2, tx, y+18, red, esc(seconds(d.RTOTargetSeconds)))
		}
	}
	x := 0
	ly := len(ds)*rowH + 14
	for _, n := range names {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" font-size="11">%s</text>`, x, ly, colour[n], x+14, ly+9, esc(n))
		x += 24 + 7*len(n)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func seconds(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.1fs", s)
	}
	return duration(s)
}

func bytesText(n int64) string { return asset.HumanBytes(n) }
