// Package drill rehearses restores: it restores an asset into a throwaway
// target on this machine (a fresh PostgreSQL data directory on a private
// socket, a fresh cluster loaded with pg_restore, a temporary SQLite file,
// a temporary directory), starts it, runs the integrity checks and the
// policy's validation queries, and measures what a real recovery would
// take (RTO, phase by phase) and lose (RPO). The target is torn down
// whatever happened. What a drill found is an evidence.DrillReport.
package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/checkquery"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Options shape one drill.
type Options struct {
	// Kind drills the asset (its Drill method); Asset is of that kind.
	Kind  asset.Kind
	Asset *policy.Asset
	// Tier holds the objectives the results are held to; nil when the
	// asset has none.
	Tier       *policy.Tier
	Repo       *repo.Repository
	Repository string // its name, for the report
	// Point is policy.DrillLatest, policy.DrillRandom, asset.PointTime
	// (with Time) or asset.PointSnapshot (with Snapshot).
	Point    string
	Time     time.Time
	Snapshot string
	Checks   []policy.ValidationQuery
	Trigger  string // manual or schedule
	// RestoreCommand gives the restore_command a PostgreSQL target fetches
	// WAL with (lifeboat wal-fetch for this asset and repository), which
	// must treat segments after until (when not "") as not archived: the
	// archive as it stood when the drill began.
	RestoreCommand func(until string) (string, error)
	// RestoreEnv is the environment RestoreCommand needs (the policy's
	// variables, see childenv.Self).
	RestoreEnv []string
	// RunAs is the OS user throwaway servers run as when the drill runs as
	// root; "" picks the data directory's owner, else postgres.
	RunAs string
	// WorkDir is where the throwaway target is made ("": the system's
	// temporary directory). It needs room for a full restore.
	WorkDir string
	Workers int
	// OnPhase, when set, is told of each phase as it ends (a platform
	// exercise starts the next tier once this tier's data is restored).
	OnPhase func(name string, at time.Time)
	Log     *slog.Logger
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Run performs a drill and returns its report. The error is non-nil when
// the drill could not be carried out or failed; the report is returned
// either way (with Passed false and Error set), except when the options
// themselves are wrong.
func Run(ctx context.Context, o Options) (*evidence.DrillReport, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := o.Asset
	d := &drill{o: o, rep: &evidence.DrillReport{
		Version: evidence.Version, ID: newID(o.Now()), Asset: a.Name, Kind: string(a.Kind), Tier: a.Tier,
		Repository: o.Repository, Trigger: o.Trigger, Point: o.Point, Started: o.Now().UTC(),
	}}
	d.rep.Host, _ = os.Hostname()
	if d.rep.Trigger == "" {
		d.rep.Trigger = "manual"
	}
	if d.rep.Point == "" {
		d.rep.Point = policy.DrillLatest
	}
	base := o.WorkDir
	if base == "" {
		base = os.TempDir()
	}
	work, err := os.MkdirTemp(base, "lifeboat-drill-")
	if err != nil {
		return nil, fmt.Errorf("drill %s: make a work directory in %s: %w", a.Name, base, err)
	}
	d.work = work
	// The target goes whatever happens, even when ctx was cancelled.
	defer func() {
		for _, f := range d.cleanup {
			f()
		}
		if err := os.RemoveAll(work); err != nil {
			o.Log.Warn("drill: remove the throwaway target", "dir", work, "err", err)
		}
	}()

	d.mark = o.Now()
	runErr := o.Kind.Drill(ctx, d)
	d.finish(runErr)
	// Checks cut short by the stop fail without an error from the kind:
	// a drill stopped before it passed is aborted, not failed.
	if ctx.Err() != nil && (runErr != nil || !d.rep.Passed) {
		d.rep.Aborted = true
		return d.rep, fmt.Errorf("drill %s of %s was stopped before it finished: %w", d.rep.ID, a.Name, context.Cause(ctx))
	}
	if !d.rep.Passed {
		return d.rep, fmt.Errorf("drill %s of %s failed: %s", d.rep.ID, a.Name, d.rep.Error)
	}
	return d.rep, nil
}

// drill is one drill under way.
type drill struct {
	o       Options
	rep     *evidence.DrillReport
	work    string
	cleanup []func() // teardown steps, run in order
	mark    time.Time
	// recorded are the values the backup recorded for "= recorded" checks.
	recorded checkquery.Recorded
}

// drill is what the kind drills through (asset.Drill).
var _ asset.Drill = (*drill)(nil)

func (d *drill) Asset() *policy.Asset               { return d.o.Asset }
func (d *drill) Repo() *repo.Repository             { return d.o.Repo }
func (d *drill) Report() *evidence.DrillReport      { return d.rep }
func (d *drill) Now() time.Time                     { return d.o.Now() }
func (d *drill) Workers() int                       { return d.o.Workers }
func (d *drill) Log() *slog.Logger                  { return d.o.Log }
func (d *drill) WorkDir() string                    { return d.work }
func (d *drill) RunAs() string                      { return d.o.RunAs }
func (d *drill) Cleanup(f func())                   { d.cleanup = append(d.cleanup, f) }
func (d *drill) Point() (string, time.Time, string) { return d.rep.Point, d.o.Time, d.o.Snapshot }

func (d *drill) RestoreCommand(until string) (string, error) {
	if d.o.RestoreCommand == nil {
		return "", fmt.Errorf("drill %s: no restore_command for WAL", d.o.Asset.Name)
	}
	return d.o.RestoreCommand(until)
}

func (d *drill) RestoreEnv() []string { return d.o.RestoreEnv }

// Phase closes the phase under way now; PhaseEnded at a moment the kind
// measured.
func (d *drill) Phase(name string) { d.PhaseEnded(name, d.o.Now()) }

func (d *drill) PhaseEnded(name string, at time.Time) {
	d.rep.Phases = append(d.rep.Phases, evidence.Phase{Name: name, Seconds: round3(max(0, at.Sub(d.mark).Seconds()))})
	d.mark = at
	if d.o.OnPhase != nil {
		d.o.OnPhase(name, at)
	}
}

// Check records an integrity check's outcome.
func (d *drill) Integrity(c asset.IntegrityCheck) {
	d.addCheck(evidence.Check{Name: c.Name, Type: evidence.CheckIntegrity, Passed: c.Passed, Got: c.Got, Expect: c.Expect,
		Detail: oneLine(c.Detail), Seconds: round3(c.Seconds)})
}

func (d *drill) addCheck(c evidence.Check) { d.rep.Checks = append(d.rep.Checks, c) }

// finish fills in the totals, the objectives and the verdict.
func (d *drill) finish(runErr error) {
	r := d.rep
	r.Ended = d.o.Now().UTC()
	var rto float64
	for _, p := range r.Phases {
		rto += p.Seconds
	}
	r.RTOSeconds = round3(rto)
	if !r.Recovered.IsZero() && !r.Target.IsZero() {
		r.RPOSeconds = round3(math.Max(0, r.Target.Sub(r.Recovered).Seconds()))
	}
	var issues []string
	if runErr != nil {
		r.Error = oneLine(runErr.Error())
		issues = append(issues, r.Error)
	}
	for _, c := range r.Checks {
		if !c.Passed {
			issues = append(issues, fmt.Sprintf("check %q: %s", c.Name, c.Detail))
		}
	}
	if t := d.o.Tier; t != nil && runErr == nil {
		r.RTOTargetSeconds = time.Duration(t.RTO).Seconds()
		r.RPOTargetSeconds = time.Duration(t.RPO).Seconds()
		rtoMet := r.RTOSeconds <= r.RTOTargetSeconds
		rpoMet := r.RPOSeconds <= r.RPOTargetSeconds
		r.RTOMet, r.RPOMet = &rtoMet, &rpoMet
		if !rtoMet {
			issues = append(issues, fmt.Sprintf("RTO %s exceeds the %s tier's %s", fmtSeconds(r.RTOSeconds), r.Tier, time.Duration(t.RTO)))
		}
		if !rpoMet {
			issues = append(issues, fmt.Sprintf("RPO %s exceeds the %s tier's %s", fmtSeconds(r.RPOSeconds), r.Tier, time.Duration(t.RPO)))
		}
	}
	r.Issues = issues
	r.Passed = len(issues) == 0
	if !r.Passed && r.Error == "" {
		r.Error = issues[0]
		if len(issues) > 1 {
			r.Error += fmt.Sprintf(" (and %d more)", len(issues)-1)
		}
	}
}

// newID names a report: its start time, then random bits so that two
// drills in one second on two hosts do not collide. IDs sort by time.
func newID(t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// fmtSeconds writes a duration in seconds as Go does, to the millisecond.
func fmtSeconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 600 {
		s = s[:600] + "..."
	}
	return s
}
