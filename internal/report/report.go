// Package report builds the disaster-recovery report: the tables that
// backup and DR plans leave blank ("Last test: TBD", "RTO achieved: —"),
// filled from the drill reports and backup runs Lifeboat recorded. It is
// the document a person hands to an auditor, so it states its period,
// copies every number from a record (rounded one documented way, see
// format.go) and says "never tested" or "not measured" rather than leave
// a gap.
//
// Build turns the records into a Report, whose rows are the same for every
// format; Render writes them as Markdown, a self-contained HTML page or
// JSON. The package reads nothing itself: the caller passes the policy,
// the drills and runs from the catalog, and the sizes of the newest
// snapshots. docs/report.md describes each table.
package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Input is what a report is made from.
type Input struct {
	Policy *policy.Policy          // assets, tiers, drill schedules
	Drills []*evidence.DrillReport // newest first (catalog.Drills), already filtered by Since
	Runs   []catalog.Run           // backup runs, newest first
	// Sizes maps an asset to the bytes its newest snapshot restores (0 or
	// absent when unknown); the throughput forecast scales with it.
	Sizes     map[string]int64
	Since     time.Time // zero: all history
	Generated time.Time
	Host      string
	// Runbook is what the service read for the runbook (runbook.go); when
	// set, the report carries the runbook too.
	Runbook []RunbookAsset
	// Platform are the platform exercises (catalog.PlatformDrills), any
	// order; see platform.go.
	Platform []*evidence.PlatformReport
}

// Formats lists the formats Render writes.
var Formats = []string{"md", "html", "json"}

// Render writes the report in format "md", "html" or "json". Anything else
// is an error naming the formats. Nothing is written when rendering fails.
func Render(w io.Writer, format string, in Input) error {
	var write func(io.Writer, *Report) error
	switch format {
	case "md":
		write = writeMarkdown
	case "html":
		write = writeHTML
	case "json":
		write = writeJSON
	default:
		return fmt.Errorf("unknown report format %q: use md, html or json", format)
	}
	// Rendered whole first, so that a failure leaves no half report
	// behind that could pass for a complete one.
	var buf bytes.Buffer
	if err := write(&buf, Build(in)); err != nil {
		return fmt.Errorf("render %s report: %w", format, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write %s report: %w", format, err)
	}
	return nil
}

func writeJSON(w io.Writer, r *Report) error { return writeJSONValue(w, r) }

func writeJSONValue(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Version is the version of the JSON document; it grows when a field
// changes meaning or goes away (new fields do not change it).
const Version = 1

// Report is the whole report, as the JSON format writes it. Every table of
// the Markdown and HTML formats is drawn from these rows. Durations are
// seconds and sizes bytes, unrounded, as the records hold them; times are
// RFC 3339. A time field is absent when it is unknown.
type Report struct {
	Version   int       `json:"version"`
	Generated time.Time `json:"generated"`
	Host      string    `json:"host"`
	// Policy is the policy file the schedules and targets come from.
	Policy string `json:"policy"`
	// Since is the start of the period; absent when the report covers
	// every record. Period says the same in words.
	Since  time.Time `json:"since,omitzero"`
	Period string    `json:"period"`

	Summary    Summary        `json:"summary"`
	Schedule   []ScheduleRow  `json:"testing_schedule"`
	Log        []LogRow       `json:"test_results"`
	Objectives []ObjectiveRow `json:"objectives"`
	Forecasts  []ForecastRow  `json:"forecasts"`
	Backups    []BackupRow    `json:"backups"`
	// Unscheduled lists policy assets with no drill configured and no
	// drill in the period: nothing tests their restores.
	Unscheduled []string `json:"unscheduled"`
	// Untiered lists policy assets without a tier, which have no
	// objectives to be measured against.
	Untiered []string `json:"untiered"`
	// Runbook is the recovery runbook as of the report, when the caller
	// gathered it.
	Runbook *Runbook `json:"runbook,omitempty"`
}

// Summary is the report in a few numbers.
type Summary struct {
	Drills int `json:"drills"` // drills in the period
	Passed int `json:"passed"`
	Failed int `json:"failed"`
	// Aborted drills were stopped before they finished; they count as
	// neither passed nor failed.
	Aborted int `json:"aborted"`
	// Untested lists the assets of the testing schedule without a drill
	// in the period.
	Untested []string `json:"untested"`
	// FailedLast lists the assets whose newest drill in the period failed.
	FailedLast []string `json:"failed_last"`
	// ObjectivesMissed lists the assets whose worst measured RTO or RPO is
	// beyond the tier's target.
	ObjectivesMissed []string `json:"objectives_missed"`
}

// Results of a ScheduleRow.
const (
	ResultPass     = "pass"
	ResultFail     = "fail"
	ResultUntested = "untested" // no drill in the period
)

// ScheduleRow is one line of the Backup Testing Schedule: an asset whose
// restores are drilled (a drill in the policy, or a drill on record).
type ScheduleRow struct {
	Asset string `json:"asset"`
	Kind  string `json:"kind"`
	// Point is the policy's drill point (latest or random); for an asset
	// without a drill in the policy, the newest drill's point.
	Point string `json:"point"`
	// Type is kind and point in words, as the tables show it.
	Type string `json:"type"`
	// Schedule is the drill schedule as written in the policy, "" when
	// drills run only by hand; Frequency describes it in words (or repeats
	// the cron text when it has no simple reading).
	Schedule  string `json:"schedule"`
	Frequency string `json:"frequency"`
	// InPolicy is false for an asset the policy no longer names.
	InPolicy bool `json:"in_policy"`
	Drills   int  `json:"drills"` // drills in the period
	Passed   int  `json:"passed"`
	// LastTest is when the newest drill in the period started, LastDrill
	// its report ID.
	LastTest  time.Time `json:"last_test,omitzero"`
	LastDrill string    `json:"last_drill,omitempty"`
	// Result is the newest drill's: pass, fail or untested.
	Result string `json:"result"`
}

// LogRow is one drill of the DR Test Results Log, with what the drill
// report holds.
type LogRow struct {
	Drill      string    `json:"drill"` // the drill report's ID
	Date       time.Time `json:"date"`  // when the drill started
	Ended      time.Time `json:"ended,omitzero"`
	Asset      string    `json:"asset"`
	Kind       string    `json:"kind"`
	Tier       string    `json:"tier,omitempty"`
	Repository string    `json:"repository"`
	Host       string    `json:"host"`
	Trigger    string    `json:"trigger"`
	Point      string    `json:"point"`
	Target     time.Time `json:"target,omitzero"`
	// Snapshot is the full snapshot ID; the tables show its first 8
	// characters.
	Snapshot     string    `json:"snapshot"`
	SnapshotTime time.Time `json:"snapshot_time,omitzero"`
	// RTOSeconds is the drill's RTO. RTOMeasured says it is the time of
	// a whole recovery (the drill passed, judged it against a target, or
	// got as far as its checks); otherwise it is only the time until the
	// drill stopped, a missing WAL segment for example.
	RTOSeconds  float64 `json:"rto_seconds"`
	RTOMeasured bool    `json:"rto_measured"`
	// RPOSeconds is the drill's achieved RPO; RPOMeasured says it was
	// measured (the drill passed, judged it, or knows the newest
	// transaction that came back, Recovered).
	RPOSeconds  float64   `json:"rpo_seconds"`
	RPOMeasured bool      `json:"rpo_measured"`
	Recovered   time.Time `json:"recovered,omitzero"`
	// The targets the drill was held to, 0 when it had none, and the
	// drill's verdicts (null when it had no target).
	RTOTargetSeconds float64          `json:"rto_target_seconds"`
	RPOTargetSeconds float64          `json:"rpo_target_seconds"`
	RTOMet           *bool            `json:"rto_met"`
	RPOMet           *bool            `json:"rpo_met"`
	Passed           bool             `json:"passed"`
	Aborted          bool             `json:"aborted,omitempty"`
	Error            string           `json:"error"`
	Issues           []string         `json:"issues"` // "none" in the tables when empty
	Bytes            int64            `json:"bytes"`
	WALFiles         int              `json:"wal_files"`
	Phases           []evidence.Phase `json:"phases"`
	Checks           []evidence.Check `json:"checks"`
	// Platform is set on the line of a platform exercise (Kind
	// PlatformKind): its tiers and member drills.
	Platform *PlatformRow `json:"platform,omitempty"`
}

// ObjectiveRow holds one tiered asset's targets against what its drills in
// the period measured.
type ObjectiveRow struct {
	Asset string    `json:"asset"`
	Tier  string    `json:"tier"`
	RPO   Objective `json:"rpo"`
	RTO   Objective `json:"rto"`
	// Status is "missed" when either objective was missed, "met" when
	// both were measured and met, "not measured" otherwise.
	Status string `json:"status"`
}

// Statuses of an ObjectiveRow.
const (
	StatusMet         = "met"
	StatusMissed      = "missed"
	StatusNotMeasured = "not measured"
)

// Objective is one objective (RPO or RTO) of one asset over the period.
type Objective struct {
	// TargetSeconds is the tier's target in the current policy.
	TargetSeconds float64 `json:"target_seconds"`
	// Measurements counts the drills in the period that measured it (an
	// RPO: Recovered known; an RTO: the drill reached its checks).
	Measurements int `json:"measurements"`
	// Worst and latest measured values and the drills that gave them.
	WorstSeconds  float64 `json:"worst_seconds"`
	WorstDrill    string  `json:"worst_drill,omitempty"`
	LatestSeconds float64 `json:"latest_seconds"`
	LatestDrill   string  `json:"latest_drill,omitempty"`
	// Met is worst <= target; null when nothing was measured or there is
	// no target.
	Met *bool `json:"met"`
}

// Statuses of a ForecastRow.
const (
	ForecastWithin   = "within target"
	ForecastExceeds  = "exceeds target"
	ForecastNoTarget = "no target"
	ForecastNoSize   = "size unknown"
	ForecastNoDrill  = "no completed drill"
	ForecastNoRate   = "throughput unknown"
)

// ForecastRow is the restore throughput seen in an asset's newest passing
// drill and the RTO it forecasts for the asset's current size.
type ForecastRow struct {
	Asset string `json:"asset"`
	Tier  string `json:"tier,omitempty"`
	// Drill and DrillDate name the newest drill in the period that
	// completed a restore (RTOMeasured), DrillPassed whether it passed.
	// One that failed a check or missed its RTO restored all the same,
	// and skipping it would hide a slowdown behind an older, faster drill.
	Drill       string    `json:"drill,omitempty"`
	DrillDate   time.Time `json:"drill_date,omitzero"`
	DrillPassed bool      `json:"drill_passed"`
	// DrillBytes is what that drill restored, in FetchWriteSeconds (its
	// fetch and write phases); ThroughputBps is their ratio
	// (DrillReport.Throughput).
	DrillBytes        int64   `json:"drill_bytes"`
	FetchWriteSeconds float64 `json:"fetch_write_seconds"`
	ThroughputBps     float64 `json:"throughput_bps"`
	// OtherSeconds is the time the drill spent in its other phases (WAL
	// replay, start, checks), carried into the forecast unscaled.
	OtherSeconds float64 `json:"other_seconds"`
	// SizeBytes is what the asset's newest snapshot restores, 0 when
	// unknown.
	SizeBytes int64 `json:"size_bytes"`
	// ForecastSeconds = SizeBytes / ThroughputBps + OtherSeconds; 0 when
	// it cannot be computed (see Status).
	ForecastSeconds  float64 `json:"forecast_seconds"`
	RTOTargetSeconds float64 `json:"rto_target_seconds"`
	// Status is one of "within target", "exceeds target", "no target",
	// "size unknown", "no completed drill", "throughput unknown".
	Status string `json:"status"`
}

// BackupRow is one asset's backup runs in the period.
type BackupRow struct {
	Asset string `json:"asset"`
	Kind  string `json:"kind"`
	// Schedule is the backup schedule as written, Frequency in words.
	Schedule  string `json:"schedule"`
	Frequency string `json:"frequency"`
	InPolicy  bool   `json:"in_policy"`
	// Runs counts every run that started in the period, whatever its end;
	// OK, Failed, Aborted and Skipped count by result (runs still going
	// count in Runs only).
	Runs    int `json:"runs"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	Aborted int `json:"aborted"`
	Skipped int `json:"skipped"`
	// LastSuccess is when the newest successful run in the period ended,
	// LastSnapshot the snapshot it stored.
	LastSuccess  time.Time `json:"last_success,omitzero"`
	LastSnapshot string    `json:"last_snapshot,omitempty"`
	// LastFailure and LastError are the newest failed run's start and
	// reason.
	LastFailure time.Time `json:"last_failure,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

// Build makes the report's rows from in. Drills and runs that started
// before in.Since are left out, so the tables never reach outside the
// period the header states, and drills are put newest first whatever
// order they came in.
func Build(in Input) *Report {
	p := in.Policy
	if p == nil {
		p = &policy.Policy{}
	}
	r := &Report{
		Version:     Version,
		Generated:   in.Generated.UTC(),
		Host:        in.Host,
		Policy:      p.Source,
		Period:      period(in.Since, in.Generated),
		Schedule:    []ScheduleRow{},
		Log:         []LogRow{},
		Objectives:  []ObjectiveRow{},
		Forecasts:   []ForecastRow{},
		Backups:     []BackupRow{},
		Unscheduled: []string{},
		Untiered:    []string{},
		Summary: Summary{
			Untested:         []string{},
			FailedLast:       []string{},
			ObjectivesMissed: []string{},
		},
	}
	if !in.Since.IsZero() {
		r.Since = in.Since.UTC()
	}

	drills := make([]*evidence.DrillReport, 0, len(in.Drills))
	for _, d := range in.Drills {
		if d != nil && inPeriod(d.Started, in.Since) {
			drills = append(drills, d)
		}
	}
	slices.SortStableFunc(drills, func(a, b *evidence.DrillReport) int { return b.Started.Compare(a.Started) })
	byAsset := map[string][]*evidence.DrillReport{}
	for _, d := range drills {
		r.Log = append(r.Log, logRow(d))
		r.Summary.Drills++
		if d.Aborted {
			r.Summary.Aborted++
			continue
		}
		byAsset[d.Asset] = append(byAsset[d.Asset], d)
		if d.Passed {
			r.Summary.Passed++
		} else {
			r.Summary.Failed++
		}
	}

	policyAssets := map[string]*policy.Asset{}
	for i := range p.Assets {
		policyAssets[p.Assets[i].Name] = &p.Assets[i]
	}
	// Assets are listed in policy order, then those only the records name
	// (renamed or removed since) by name.
	var drilledOnly []string
	for name := range byAsset {
		if policyAssets[name] == nil {
			drilledOnly = append(drilledOnly, name)
		}
	}
	slices.Sort(drilledOnly)

	// Each policy asset: its testing schedule row, forecast and objectives.
	for i := range p.Assets {
		a := &p.Assets[i]
		if a.Tier == "" {
			r.Untiered = append(r.Untiered, a.Name)
		}
		ds := byAsset[a.Name]
		if a.Drill == nil && len(ds) == 0 {
			r.Unscheduled = append(r.Unscheduled, a.Name)
		} else {
			r.Schedule = append(r.Schedule, scheduleRow(a.Name, a, ds))
		}
		if a.Drill != nil || len(ds) > 0 || a.Tier != "" {
			r.Forecasts = append(r.Forecasts, forecastRow(a.Name, a.Tier, tierRTO(p, a.Tier), ds, in.Sizes[a.Name]))
		}
		if a.Tier != "" {
			r.Objectives = append(r.Objectives, objectiveRow(a, p.Tiers[a.Tier], ds))
		}
	}
	for _, name := range drilledOnly {
		ds := byAsset[name]
		r.Schedule = append(r.Schedule, scheduleRow(name, nil, ds))
		r.Forecasts = append(r.Forecasts, forecastRow(name, ds[0].Tier, ds[0].RTOTargetSeconds, ds, in.Sizes[name]))
	}
	addPlatform(r, p, in)
	for _, s := range r.Schedule {
		switch s.Result {
		case ResultUntested:
			r.Summary.Untested = append(r.Summary.Untested, s.Asset)
		case ResultFail:
			r.Summary.FailedLast = append(r.Summary.FailedLast, s.Asset)
		}
	}
	for _, o := range r.Objectives {
		if o.Status == StatusMissed {
			r.Summary.ObjectivesMissed = append(r.Summary.ObjectivesMissed, o.Asset)
		}
	}

	r.Backups = backupRows(p, in.Runs, in.Since)
	if in.Runbook != nil {
		r.Runbook = BuildRunbook(in)
	}
	return r
}

func inPeriod(t, since time.Time) bool { return since.IsZero() || !t.Before(since) }

func period(since, generated time.Time) string {
	if since.IsZero() {
		return "all records, up to " + timeText(generated)
	}
	return "since " + timeText(since) + ", up to " + timeText(generated)
}

func tierRTO(p *policy.Policy, tier string) float64 {
	if t, ok := p.Tiers[tier]; ok {
		return t.RTO.Std().Seconds()
	}
	return 0
}

// rtoMeasured reports whether a drill's RTO covers a whole recovery: it
// passed, judged its RTO against a target, or got as far as its checks (a
// failed validation query still ends a complete recovery). A drill that
// stopped at a missing WAL segment measured only part of one. The metrics
// (internal/metrics) decide the same way, so both show the same numbers.
func rtoMeasured(d *evidence.DrillReport) bool {
	if d.Passed || d.RTOMet != nil {
		return true
	}
	return slices.ContainsFunc(d.Phases, func(p evidence.Phase) bool { return p.Name == evidence.PhaseChecks })
}

// rpoMeasured reports whether a drill measured its RPO: it found the
// newest transaction it recovered (or passed, or judged the RPO).
func rpoMeasured(d *evidence.DrillReport) bool {
	return d.Passed || d.RPOMet != nil || !d.Recovered.IsZero()
}

func logRow(d *evidence.DrillReport) LogRow {
	return LogRow{
		Drill:            d.ID,
		Date:             d.Started.UTC(),
		Ended:            d.Ended.UTC(),
		Asset:            d.Asset,
		Kind:             d.Kind,
		Tier:             d.Tier,
		Repository:       d.Repository,
		Host:             d.Host,
		Trigger:          d.Trigger,
		Point:            d.Point,
		Target:           d.Target.UTC(),
		Snapshot:         d.Snapshot,
		SnapshotTime:     d.SnapshotTime.UTC(),
		RTOSeconds:       d.RTOSeconds,
		RTOMeasured:      rtoMeasured(d),
		RPOSeconds:       d.RPOSeconds,
		RPOMeasured:      rpoMeasured(d),
		Recovered:        d.Recovered.UTC(),
		RTOTargetSeconds: d.RTOTargetSeconds,
		RPOTargetSeconds: d.RPOTargetSeconds,
		RTOMet:           d.RTOMet,
		RPOMet:           d.RPOMet,
		Passed:           d.Passed,
		Aborted:          d.Aborted,
		Error:            d.Error,
		Issues:           orEmpty(d.Issues),
		Bytes:            d.Bytes,
		WALFiles:         d.WALFiles,
		Phases:           orEmpty(d.Phases),
		Checks:           orEmpty(d.Checks),
	}
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// scheduleRow describes one asset's drills; a is nil for an asset the
// policy no longer names. ds holds its drills, newest first.
func scheduleRow(name string, a *policy.Asset, ds []*evidence.DrillReport) ScheduleRow {
	row := ScheduleRow{Asset: name, InPolicy: a != nil, Drills: len(ds), Result: ResultUntested}
	for _, d := range ds {
		if d.Passed {
			row.Passed++
		}
	}
	if len(ds) > 0 {
		row.LastTest = ds[0].Started.UTC()
		row.LastDrill = ds[0].ID
		row.Result = ResultFail
		if ds[0].Passed {
			row.Result = ResultPass
		}
		row.Kind, row.Point = ds[0].Kind, ds[0].Point
	}
	switch {
	case a == nil:
		row.Frequency = "not in the policy"
	case a.Drill == nil:
		row.Kind = string(a.Kind)
		row.Frequency = manualOnly
	default:
		row.Kind, row.Point = string(a.Kind), a.Drill.Point
		row.Schedule = a.Drill.Schedule
		row.Frequency, _ = frequency(a.Drill.Schedule)
	}
	row.Type = row.Kind
	if row.Point != "" {
		row.Type += ", " + row.Point + " point"
	}
	return row
}

// objectiveRow measures a tiered asset's drills (newest first) against
// its tier in the current policy: the targets a reader checks today.
func objectiveRow(a *policy.Asset, t policy.Tier, ds []*evidence.DrillReport) ObjectiveRow {
	row := ObjectiveRow{
		Asset: a.Name,
		Tier:  a.Tier,
		RPO:   Objective{TargetSeconds: t.RPO.Std().Seconds()},
		RTO:   Objective{TargetSeconds: t.RTO.Std().Seconds()},
	}
	for _, d := range ds {
		if rpoMeasured(d) {
			row.RPO.add(d.RPOSeconds, d.ID)
		}
		if rtoMeasured(d) {
			row.RTO.add(d.RTOSeconds, d.ID)
		}
	}
	row.RPO.judge()
	row.RTO.judge()
	switch {
	case isFalse(row.RPO.Met) || isFalse(row.RTO.Met):
		row.Status = StatusMissed
	case isTrue(row.RPO.Met) && isTrue(row.RTO.Met):
		row.Status = StatusMet
	default:
		row.Status = StatusNotMeasured
	}
	return row
}

// add records one measurement; drills come newest first, so the first is
// the latest.
func (o *Objective) add(v float64, drill string) {
	if o.Measurements == 0 {
		o.LatestSeconds, o.LatestDrill = v, drill
	}
	if o.Measurements == 0 || v > o.WorstSeconds {
		o.WorstSeconds, o.WorstDrill = v, drill
	}
	o.Measurements++
}

func (o *Objective) judge() {
	if o.Measurements > 0 && o.TargetSeconds > 0 {
		met := o.WorstSeconds <= o.TargetSeconds
		o.Met = &met
	}
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// forecastRow forecasts an asset's RTO from its newest drill in ds (newest
// first) that completed a restore.
func forecastRow(name, tier string, target float64, ds []*evidence.DrillReport, size int64) ForecastRow {
	row := ForecastRow{Asset: name, Tier: tier, SizeBytes: size, RTOTargetSeconds: target, Status: ForecastNoDrill}
	var d *evidence.DrillReport
	for _, c := range ds {
		if rtoMeasured(c) {
			d = c
			break
		}
	}
	if d == nil {
		return row
	}
	row.Drill, row.DrillDate, row.DrillPassed = d.ID, d.Started.UTC(), d.Passed
	row.DrillBytes = d.Bytes
	row.FetchWriteSeconds = d.Phase(evidence.PhaseFetch) + d.Phase(evidence.PhaseWrite)
	row.ThroughputBps = d.Throughput()
	for _, ph := range d.Phases {
		if ph.Name != evidence.PhaseFetch && ph.Name != evidence.PhaseWrite {
			row.OtherSeconds += ph.Seconds
		}
	}
	switch {
	case row.ThroughputBps <= 0:
		row.Status = ForecastNoRate
	case size <= 0:
		row.Status = ForecastNoSize
	default:
		row.ForecastSeconds = float64(size)/row.ThroughputBps + row.OtherSeconds
		switch {
		case target <= 0:
			row.Status = ForecastNoTarget
		case row.ForecastSeconds <= target:
			row.Status = ForecastWithin
		default:
			row.Status = ForecastExceeds
		}
	}
	return row
}

// backupRows counts each asset's runs in the period: the policy's assets in
// its order, then assets only the runs name.
func backupRows(p *policy.Policy, runs []catalog.Run, since time.Time) []BackupRow {
	rows := []BackupRow{}
	index := map[string]int{}
	for _, a := range p.Assets {
		freq, _ := frequency(a.Schedule)
		index[a.Name] = len(rows)
		rows = append(rows, BackupRow{Asset: a.Name, Kind: string(a.Kind), Schedule: a.Schedule, Frequency: freq, InPolicy: true})
	}
	var extra []BackupRow
	extraIndex := map[string]int{}
	for _, run := range runs {
		if !inPeriod(run.Start, since) {
			continue
		}
		var row *BackupRow
		if i, ok := index[run.Asset]; ok {
			row = &rows[i]
		} else {
			i, ok := extraIndex[run.Asset]
			if !ok {
				i = len(extra)
				extraIndex[run.Asset] = i
				extra = append(extra, BackupRow{Asset: run.Asset, Kind: run.Kind, Frequency: "not in the policy"})
			}
			row = &extra[i]
		}
		row.Runs++
		switch run.Result {
		case catalog.OK:
			row.OK++
			// Runs may come in any order: keep the newest.
			if end := endOf(run); end.After(row.LastSuccess) {
				row.LastSuccess, row.LastSnapshot = end, run.Snapshot
			}
		case catalog.Failed:
			row.Failed++
			if run.Start.UTC().After(row.LastFailure) {
				row.LastFailure, row.LastError = run.Start.UTC(), run.Error
			}
		case catalog.Aborted:
			row.Aborted++
		case catalog.Skipped:
			row.Skipped++
		}
	}
	slices.SortFunc(extra, func(a, b BackupRow) int { return cmp.Compare(a.Asset, b.Asset) })
	return append(rows, extra...)
}

// endOf is when a run's snapshot was durably stored: its end, or its start
// when the end is missing.
func endOf(run catalog.Run) time.Time {
	if run.End.IsZero() {
		return run.Start.UTC()
	}
	return run.End.UTC()
}
