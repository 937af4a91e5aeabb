package report

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// The runbook (docs/runbook.md) is what an engineer opens when the platform
// must be brought back: tier by tier in recovery order, each asset with
// where its backups are, the exact commands, the checks, the RTO to expect
// and how the last drill went. It is drawn from the same records as the
// report (drills, sizes) plus what only the service can read (each
// repository's holdings, the kinds' own restore steps), which the caller
// passes as Input.Runbook.

// RunbookAsset is what the service gathered of one asset for the runbook.
type RunbookAsset struct {
	Name string `json:"asset"`
	Kind string `json:"kind"`
	// Repositories are where its backups are, the primary first.
	Repositories []RunbookRepository `json:"repositories"`
	// Setup runs before a restore; Latest restores the newest point
	// (from the primary, then from each copy); ToTime restores an earlier
	// point; After brings the restored copy up; Checks show it is good.
	Setup  []Command `json:"setup,omitempty"`
	Latest []Command `json:"latest"`
	ToTime []Command `json:"to_time"`
	After  []Command `json:"after,omitempty"`
	Checks []Command `json:"checks"`
	// Holds are the snapshots on legal hold (incident snapshots among
	// them), in every repository.
	Holds []Hold `json:"holds,omitempty"`
}

// Hold is a legal hold on one snapshot in one repository.
type Hold struct {
	Snapshot   string    `json:"snapshot"`
	Repository string    `json:"repository"`
	Reason     string    `json:"reason"`
	By         string    `json:"by"`
	Created    time.Time `json:"created,omitzero"`
}

// RunbookRepository is one repository of an asset as the runbook lists it.
type RunbookRepository struct {
	Name     string    `json:"name"`
	Role     string    `json:"role"` // primary or copy
	Location string    `json:"location"`
	Newest   time.Time `json:"newest,omitzero"`
	// Snapshots counts the asset's snapshots there, Pinned those on hold.
	Snapshots int `json:"snapshots"`
	Pinned    int `json:"pinned"`
	// Restorable is, for a PITR asset, the window it can restore ("" for
	// others).
	Restorable string `json:"restorable,omitempty"`
	Error      string `json:"error,omitempty"`
}

// Command is one command line of the runbook and what it does.
type Command struct {
	What string `json:"what"`
	Line string `json:"line"`
}

// Runbook is the runbook as JSON writes it.
type Runbook struct {
	Version   int           `json:"version"`
	Generated time.Time     `json:"generated"`
	Host      string        `json:"host"`
	Policy    string        `json:"policy"`
	Tiers     []RunbookTier `json:"tiers"`
}

// RunbookTier is one tier's assets, in the order tiers recover (tightest
// RTO first; assets without a tier last).
type RunbookTier struct {
	Tier       string         `json:"tier,omitempty"`
	RTOSeconds float64        `json:"rto_target_seconds,omitempty"`
	RPOSeconds float64        `json:"rpo_target_seconds,omitempty"`
	Assets     []RunbookEntry `json:"assets"`
}

// RunbookEntry is one asset's part of the runbook.
type RunbookEntry struct {
	RunbookAsset
	// Forecast is the RTO forecast from the newest drill that completed
	// a restore (ForecastRow); LastDrill the newest drill, nil for none.
	Forecast  ForecastRow `json:"forecast"`
	LastDrill *LogRow     `json:"last_drill,omitempty"`
}

// NoDrillYet is what the runbook says where a forecast needs a drill.
const NoDrillYet = "no drill yet"

// BuildRunbook makes the runbook from in: every asset of the policy, by
// tier in recovery order, then in policy order. Drills are read over all
// of in.Drills whatever in.Since, since the last drill may be old.
func BuildRunbook(in Input) *Runbook {
	p := in.Policy
	if p == nil {
		p = &policy.Policy{}
	}
	rb := &Runbook{Version: Version, Generated: in.Generated.UTC(), Host: in.Host, Policy: p.Source, Tiers: []RunbookTier{}}
	drills := slices.Clone(in.Drills)
	slices.SortStableFunc(drills, func(a, b *evidence.DrillReport) int { return b.Started.Compare(a.Started) })
	byAsset := map[string][]*evidence.DrillReport{}
	for _, d := range drills {
		if d != nil && !d.Aborted {
			byAsset[d.Asset] = append(byAsset[d.Asset], d)
		}
	}
	gathered := map[string]RunbookAsset{}
	for _, a := range in.Runbook {
		gathered[a.Name] = a
	}
	var tiers []string
	for _, a := range p.Assets {
		tiers = append(tiers, a.Tier)
	}
	order := tierOrder(p, tiers)
	for _, tier := range order {
		t := RunbookTier{Tier: tier, Assets: []RunbookEntry{}}
		if pt, ok := p.Tiers[tier]; ok {
			t.RTOSeconds, t.RPOSeconds = time.Duration(pt.RTO).Seconds(), time.Duration(pt.RPO).Seconds()
		}
		for i := range p.Assets {
			a := &p.Assets[i]
			if a.Tier != tier {
				continue
			}
			e := RunbookEntry{RunbookAsset: gathered[a.Name]}
			e.Name, e.Kind = a.Name, string(a.Kind)
			ds := byAsset[a.Name]
			e.Forecast = forecastRow(a.Name, a.Tier, tierRTO(p, a.Tier), ds, in.Sizes[a.Name])
			if len(ds) > 0 {
				l := logRow(ds[0])
				e.LastDrill = &l
			}
			t.Assets = append(t.Assets, e)
		}
		rb.Tiers = append(rb.Tiers, t)
	}
	return rb
}

// tierOrder is the policy's recovery order of the tiers named (tightest
// RTO first, then RPO, then name; no tier last).
func tierOrder(p *policy.Policy, names []string) []string {
	out := p.TierOrder(names)
	// "" sorts with the tiers the policy does not define: keep it last.
	if i := slices.Index(out, ""); i >= 0 {
		out = append(slices.Delete(out, i, i+1), "")
	}
	return out
}

// RenderRunbook writes the runbook in format "md", "html" or "json";
// nothing is written when rendering fails.
func RenderRunbook(w io.Writer, format string, in Input) error {
	rb := BuildRunbook(in)
	var buf bytes.Buffer
	var err error
	switch format {
	case "md":
		err = writeMarkdownDocument(&buf, drawRunbook(rb))
	case "html":
		err = pageTemplate.Execute(&buf, drawRunbook(rb))
	case "json":
		err = writeJSONValue(&buf, rb)
	default:
		return fmt.Errorf("unknown runbook format %q: use md, html or json", format)
	}
	if err != nil {
		return fmt.Errorf("render %s runbook: %w", format, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write %s runbook: %w", format, err)
	}
	return nil
}

func drawRunbook(rb *Runbook) document {
	d := document{
		Title: "Recovery runbook",
		Facts: []fact{
			{"Generated", timeText(rb.Generated)},
			{"Host", orDash(rb.Host)},
			{"Policy", orDash(rb.Policy)},
		},
	}
	d.Sections = append(d.Sections, runbookIntro(rb))
	for i, t := range rb.Tiers {
		d.Sections = append(d.Sections, drawRunbookTier(i+1, t))
	}
	return d
}

func runbookIntro(rb *Runbook) section {
	s := section{ID: "recovery-order", Title: "Recovery order",
		Intro: []string{
			"Recover tier by tier, in this order; the assets of one tier can be restored in parallel. " +
				"Every restore below writes to a scratch location, never over production: check what came back, then put it in place. " +
				"A copy repository restores alone (--repository), without the primary.",
			"The RTO forecast is the asset's current size divided by the restore throughput its newest completed drill measured, plus that drill's other phases (WAL replay, start, checks).",
		}}
	t := table{Head: []string{"Step", "Tier", "RTO target", "RPO target", "Assets"}, Empty: "The policy has no assets."}
	for i, tier := range rb.Tiers {
		var names []string
		for _, a := range tier.Assets {
			names = append(names, a.Name)
		}
		t.Rows = append(t.Rows, []cell{txt(fmt.Sprint(i + 1)), txt(tierName(tier.Tier)), txt(target(tier.RTOSeconds)), txt(target(tier.RPOSeconds)), txt(strings.Join(names, ", "))})
	}
	s.Tables = []table{t}
	return s
}

func tierName(t string) string {
	if t == "" {
		return "no tier"
	}
	return t
}

func drawRunbookTier(step int, t RunbookTier) section {
	s := section{ID: "tier-" + fmt.Sprint(step), Title: fmt.Sprintf("%d. %s", step, tierName(t.Tier))}
	if t.Tier != "" {
		s.Intro = []string{fmt.Sprintf("RTO target %s, RPO target %s.", target(t.RTOSeconds), target(t.RPOSeconds))}
	}
	for _, a := range t.Assets {
		s.Subs = append(s.Subs, drawRunbookAsset(a))
	}
	return s
}

func drawRunbookAsset(a RunbookEntry) section {
	s := section{ID: "asset-" + a.Name, Title: fmt.Sprintf("%s (%s)", a.Name, a.Kind)}
	s.Intro = append(s.Intro, "RTO forecast: "+forecastText(a.Forecast), "Last drill: "+lastDrillText(a.LastDrill))
	repos := table{Head: []string{"Repository", "Role", "Location", "Snapshots", "Newest", "Restorable", "On hold"}, Empty: "No repository could be read."}
	for _, r := range a.Repositories {
		newest := txt(timeText(r.Newest))
		if r.Error != "" {
			newest = flagged("unreadable: " + r.Error)
		}
		repos.Rows = append(repos.Rows, []cell{txt(r.Name), txt(r.Role), {Text: r.Location, Mark: code}, txt(fmt.Sprint(r.Snapshots)),
			newest, txt(orDash(r.Restorable)), txt(fmt.Sprint(r.Pinned))})
	}
	s.Tables = []table{repos}
	if len(a.Holds) > 0 {
		holds := table{Head: []string{"Held snapshot", "Repository", "Since", "By", "Reason"}}
		for _, h := range a.Holds {
			holds.Rows = append(holds.Rows, []cell{{Text: shortID(h.Snapshot), Mark: code}, txt(h.Repository), txt(timeText(h.Created)), txt(orDash(h.By)), txt(h.Reason)})
		}
		s.Tables = append(s.Tables, holds)
	}
	for _, block := range []struct {
		title string
		lines []Command
	}{
		{"Before the restore", a.Setup},
		{"Restore the latest point", a.Latest},
		{"Restore an earlier point", a.ToTime},
		{"Bring it up", a.After},
		{"Check it", a.Checks},
	} {
		if len(block.lines) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString("# " + block.title)
		for _, c := range block.lines {
			b.WriteString("\n# " + strings.ReplaceAll(c.What, "\n", " ") + "\n" + c.Line)
		}
		s.Code = append(s.Code, b.String())
	}
	return s
}

// forecastText is a forecast in one sentence, saying "no drill yet" when
// no drill completed a restore.
func forecastText(f ForecastRow) string {
	switch {
	case f.Drill == "":
		return NoDrillYet + " (run lifeboat drill " + f.Asset + ")."
	case f.ForecastSeconds <= 0:
		return f.Status + "."
	}
	out := fmt.Sprintf("%s for %s at %s (drill of %s), of which %s in replay, start and checks",
		seconds(f.ForecastSeconds), sizeText(f.SizeBytes), rateText(f.ThroughputBps), timeText(f.DrillDate), seconds(f.OtherSeconds))
	if f.RTOTargetSeconds > 0 {
		out += fmt.Sprintf("; target %s: %s", target(f.RTOTargetSeconds), f.Status)
	}
	return out + "."
}

func lastDrillText(l *LogRow) string {
	if l == nil {
		return NoDrillYet + "."
	}
	result := "PASS"
	if !l.Passed {
		result = "FAIL"
	}
	out := fmt.Sprintf("%s %s from %s, RTO %s", timeText(l.Date), result, orDash(l.Repository), seconds(l.RTOSeconds))
	if l.RPOMeasured {
		out += ", RPO " + seconds(l.RPOSeconds)
	}
	if l.Error != "" {
		out += ": " + l.Error
	}
	return out + "."
}

// drawRunbookSection is the runbook as one section of the DR report: the
// recovery order, then each asset with its tier in the title.
func drawRunbookSection(rb *Runbook) section {
	s := runbookIntro(rb)
	s.ID, s.Title = "runbook", "Recovery runbook"
	for _, t := range rb.Tiers {
		for _, a := range t.Assets {
			sub := drawRunbookAsset(a)
			sub.Title += " · " + tierName(t.Tier)
			s.Subs = append(s.Subs, sub)
		}
	}
	return s
}
