// Package health judges whether every asset of a policy is protected as
// the policy says: a backup for every scheduled slot, WAL archived within
// the tier's RPO, copies caught up, a passing drill for every drill slot,
// and a clean last verify. It only judges: the facts (snapshots, WAL,
// copies, drills, verifies) are gathered by the caller, so the rules can
// be tested on a fake clock.
package health

import (
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/scheduler"
)

// Check names, stable: they are alert keys and metric labels.
const (
	CheckBackup     = "backup"
	CheckWALLag     = "wal_lag"
	CheckCopy       = "copy"
	CheckDrill      = "drill"
	CheckVerify     = "verify"
	CheckRepository = "repository"
	CheckAuthentic  = "authentic"
	CheckVersioning = "versioning"
	CheckSetup      = "setup"
)

// Result is the outcome of one check of one asset (or repository).
type Result struct {
	Asset   string `json:"asset,omitempty"`
	Check   string `json:"check"`
	Subject string `json:"subject,omitempty"` // the repository, for copy, verify and repository checks
	OK      bool   `json:"ok"`
	Message string `json:"message"`
	// Value is the measured quantity, when there is one (lag in
	// seconds), for metrics.
	Value *float64 `json:"value,omitempty"`
	// Copy is the lag behind a copy check.
	Copy *CopyFacts `json:"copy,omitempty"`
}

// Facts is what the caller found.
type Facts struct {
	Now    time.Time
	Assets map[string]*AssetFacts
	// Verifies are the last verify of each repository, by name.
	Verifies map[string]Verify
	// Unreadable maps a repository that could not be read to why.
	Unreadable map[string]string
	// Unauthentic maps a repository to the objects met while gathering
	// these facts that failed their hash or authentication (planted by a
	// credential without the key, or damaged), one line each.
	Unauthentic map[string][]string
	// Versioning maps a repository whose store has versions (S3) to what
	// is wrong with its versioning ("" when it is on).
	Versioning map[string]string
	// Roles maps a repository whose policy names its credential's role to
	// what the canary found (role.go).
	Roles map[string]*RoleFacts
}

// AssetFacts are the facts about one asset.
type AssetFacts struct {
	// NewestBackup is when the newest snapshot in the primary started;
	// zero when there is none (or the primary could not be read).
	NewestBackup time.Time
	PrimaryRead  bool
	// PITR says the asset's kind archives WAL for point-in-time
	// recovery, so its archiving is judged against the tier's RPO.
	PITR bool
	// WAL is the state of archiving (PITR assets); nil when unknown.
	WAL *WALFacts
	// Copies holds each copy repository's lag.
	Copies []CopyFacts
	// Drills are the asset's drill reports, newest first (at least those
	// since the last drill slot).
	Drills []*evidence.DrillReport
	// Setup is what lifeboat doctor's read-only probes found of the
	// asset's source; nil when none ran.
	Setup *SetupFacts
	// Slot is the replication slot of a streamed asset (stream.go); nil
	// when the asset does not stream.
	Slot *SlotFacts
}

// SetupFacts are the outcome of the read-only doctor probes of a source
// (pgdata, clock, pg_wal space, who can read the policy).
type SetupFacts struct {
	Passed   []string // the probes that passed or only warned
	Failures []string // one line each: what failed and the fix
}

// WALFacts describe archiving of one PostgreSQL asset.
type WALFacts struct {
	// LagSeconds is the age of the oldest WAL not yet in the repository
	// (0 when all complete segments are archived).
	LagSeconds float64
	// Detail explains how the lag was found (from the server, or from the
	// repository alone when the server could not be reached).
	Detail string
	// Failing is the archiver's last failure, when it is newer than its
	// last success.
	Failing string
}

// CopyFacts are one copy repository's lag behind the primary.
type CopyFacts struct {
	Repository string `json:"repository"`
	Read       bool   `json:"read"` // false when the copy could not be read
	// MissingSnapshots counts snapshots the copy lacks; OldestMissing is
	// when the oldest of them was taken.
	MissingSnapshots int       `json:"missing_snapshots"`
	OldestMissing    time.Time `json:"oldest_missing,omitzero"`
	// WALSeconds is the age of the oldest WAL file the copy lacks.
	WALFiles   int     `json:"wal_files"`
	WALSeconds float64 `json:"wal_seconds"`
}

// Verify is the last verify of a repository.
type Verify struct {
	At    time.Time
	OK    bool
	Error string
}

// Evaluate judges every asset of p against the facts. Results come in the
// policy's order, repository results last.
func Evaluate(p *policy.Policy, f Facts) []Result {
	grace := time.Duration(p.Check.Grace)
	var out []Result
	for i := range p.Assets {
		a := &p.Assets[i]
		af := f.Assets[a.Name]
		if af == nil {
			af = &AssetFacts{}
		}
		var tier *policy.Tier
		if t, ok := p.Tiers[a.Tier]; ok {
			tier = &t
		}
		if r, ok := backup(a, af, f.Now, grace); ok {
			out = append(out, r)
		}
		if af.PITR {
			out = append(out, walLag(a, af, tier))
		}
		if af.Slot != nil {
			out = append(out, walSlot(a, af.Slot))
		}
		if af.Setup != nil {
			out = append(out, setup(a, af.Setup))
		}
		out = append(out, copies(a, af, f.Now, tier, grace)...)
		if r, ok := drill(a, af, f.Now, grace); ok {
			out = append(out, r)
		}
	}
	for _, rp := range p.Repositories {
		if rf, ok := f.Roles[rp.Name]; ok {
			out = append(out, role(rp.Name, rf))
		}
		if why, bad := f.Unreadable[rp.Name]; bad {
			out = append(out, Result{Check: CheckRepository, Subject: rp.Name, Message: "cannot be read: " + why})
			continue
		}
		out = append(out, authentic(rp.Name, f.Unauthentic[rp.Name]))
		if problem, ok := f.Versioning[rp.Name]; ok {
			out = append(out, versioning(rp.Name, problem))
		}
		v, ok := f.Verifies[rp.Name]
		switch {
		case !ok:
			out = append(out, Result{Check: CheckVerify, Subject: rp.Name, OK: true, Message: "never verified (run lifeboat verify)"})
		case !v.OK:
			out = append(out, Result{Check: CheckVerify, Subject: rp.Name,
				Message: fmt.Sprintf("the last verify, at %s, found problems: %s", stamp(v.At), v.Error)})
		default:
			out = append(out, Result{Check: CheckVerify, Subject: rp.Name, OK: true, Message: "last verify clean at " + stamp(v.At)})
		}
	}
	return out
}

// setup: the source is set up as backups and archiving need (what
// lifeboat doctor probes without writing).
func setup(a *policy.Asset, s *SetupFacts) Result {
	r := Result{Asset: a.Name, Check: CheckSetup}
	switch {
	case len(s.Failures) == 1:
		r.Message = s.Failures[0] + " (lifeboat doctor)"
	case len(s.Failures) > 1:
		r.Message = fmt.Sprintf("%s (and %d more; lifeboat doctor)", s.Failures[0], len(s.Failures)-1)
	default:
		r.OK, r.Message = true, strings.Join(s.Passed, ", ")+" fine"
	}
	return r
}

// authentic: no object read from the repository failed its
// authentication. Readers skip such objects and carry on, so this check is
// where someone planting them (a put-only credential without the key) is
// seen.
func authentic(repository string, found []string) Result {
	r := Result{Check: CheckAuthentic, Subject: repository}
	switch len(found) {
	case 0:
		r.OK, r.Message = true, "no object that fails authentication met"
	case 1:
		r.Message = found[0] + " (run lifeboat verify)"
	default:
		r.Message = fmt.Sprintf("%s (and %d more objects; run lifeboat verify)", found[0], len(found)-1)
	}
	return r
}

// versioning: the bucket keeps earlier versions, so that an object
// overwritten in place (a put-only credential can) comes back.
func versioning(repository, problem string) Result {
	if problem == "" {
		return Result{Check: CheckVersioning, Subject: repository, OK: true, Message: "versioning is on"}
	}
	return Result{Check: CheckVersioning, Subject: repository, Message: problem}
}

// backup: the newest slot that is over (its grace passed) must have a
// backup started at or after it. One missed slot fails.
func backup(a *policy.Asset, af *AssetFacts, now time.Time, grace time.Duration) (Result, bool) {
	if a.Schedule == "" {
		return Result{}, false
	}
	r := Result{Asset: a.Name, Check: CheckBackup}
	sched, err := policy.ParseSchedule(a.Schedule)
	if err != nil {
		r.Message = err.Error()
		return r, true
	}
	slot, ok := scheduler.PrevSlot(sched, now.Add(-grace))
	switch {
	case !af.PrimaryRead:
		r.Message = "the primary repository could not be read"
	case !ok:
		r.OK, r.Message = true, "no slot has come yet"
	case af.NewestBackup.IsZero():
		r.Message = fmt.Sprintf("no backup at all; the %s slot has passed", stamp(slot))
	case af.NewestBackup.Before(slot.Add(-slotSlack)):
		r.Message = fmt.Sprintf("missed the %s slot: the newest backup started %s (%s ago)", stamp(slot), stamp(af.NewestBackup), ago(now, af.NewestBackup))
	default:
		r.OK, r.Message = true, fmt.Sprintf("newest backup started %s (%s ago)", stamp(af.NewestBackup), ago(now, af.NewestBackup))
	}
	return r, true
}

// slotSlack allows for clocks of two hosts (the one that backs up, the
// one that checks) that differ a little.
const slotSlack = time.Minute

func walLag(a *policy.Asset, af *AssetFacts, tier *policy.Tier) Result {
	r := Result{Asset: a.Name, Check: CheckWALLag}
	w := af.WAL
	if w == nil {
		r.Message = "archiving state unknown (the primary repository could not be read)"
		return r
	}
	v := w.LagSeconds
	r.Value = &v
	lag := time.Duration(v * float64(time.Second)).Round(time.Second)
	switch {
	case w.Failing != "":
		r.Message = "archiving is failing: " + w.Failing
	case tier != nil && v > time.Duration(tier.RPO).Seconds():
		r.Message = fmt.Sprintf("WAL archive lag %s exceeds the %s tier's RPO %s (%s)", lag, a.Tier, time.Duration(tier.RPO), w.Detail)
	default:
		r.OK = true
		r.Message = fmt.Sprintf("WAL archive lag %s (%s)", lag, w.Detail)
		if tier != nil {
			r.Message = fmt.Sprintf("WAL archive lag %s within the RPO %s (%s)", lag, time.Duration(tier.RPO), w.Detail)
		}
	}
	return r
}

// copies: a copy may lack what the primary stored recently (it is being
// copied), not a snapshot older than the grace nor WAL older than the RPO.
func copies(a *policy.Asset, af *AssetFacts, now time.Time, tier *policy.Tier, grace time.Duration) []Result {
	walLimit := grace
	if tier != nil {
		walLimit = time.Duration(tier.RPO)
	}
	var out []Result
	for _, c := range af.Copies {
		r := Result{Asset: a.Name, Check: CheckCopy, Subject: c.Repository, Copy: &c}
		v := c.WALSeconds
		r.Value = &v
		switch {
		case !c.Read:
			r.Message = "the copy could not be read"
		case c.MissingSnapshots > 0 && now.Sub(c.OldestMissing) > grace:
			r.Message = fmt.Sprintf("lacks %d snapshots, the oldest taken %s (%s ago)", c.MissingSnapshots, stamp(c.OldestMissing), ago(now, c.OldestMissing))
		case c.WALFiles > 0 && v > walLimit.Seconds():
			r.Message = fmt.Sprintf("lacks %d WAL files, the oldest archived %s ago (limit %s)", c.WALFiles,
				time.Duration(v*float64(time.Second)).Round(time.Second), walLimit)
		case c.WALFiles > 0 || c.MissingSnapshots > 0:
			r.OK, r.Message = true, fmt.Sprintf("catching up: %d WAL files and %d snapshots to copy", c.WALFiles, c.MissingSnapshots)
		default:
			r.OK, r.Message = true, "caught up"
		}
		out = append(out, r)
	}
	return out
}

// drill: with a drill schedule, the newest drill slot that is over must
// have a passing drill started at or after it.
func drill(a *policy.Asset, af *AssetFacts, now time.Time, grace time.Duration) (Result, bool) {
	if a.Drill == nil || a.Drill.Schedule == "" {
		return Result{}, false
	}
	r := Result{Asset: a.Name, Check: CheckDrill}
	sched, err := policy.ParseSchedule(a.Drill.Schedule)
	if err != nil {
		r.Message = err.Error()
		return r, true
	}
	slot, ok := scheduler.PrevSlot(sched, now.Add(-grace))
	if !ok {
		r.OK, r.Message = true, "no drill slot has come yet"
		return r, true
	}
	var newest *evidence.DrillReport
	for _, d := range af.Drills {
		if d.Started.Before(slot.Add(-slotSlack)) || d.Aborted {
			continue // an aborted drill neither passed nor failed
		}
		if newest == nil {
			newest = d
		}
		if d.Passed {
			r.OK = true
			r.Message = fmt.Sprintf("drill passed %s (RTO %s, RPO %s)", stamp(d.Started), secs(d.RTOSeconds), secs(d.RPOSeconds))
			return r, true
		}
	}
	if newest != nil {
		r.Message = fmt.Sprintf("no passing drill since the %s slot; the last, %s, failed: %s", stamp(slot), stamp(newest.Started), newest.Error)
	} else {
		r.Message = fmt.Sprintf("missed the %s drill slot: no drill since", stamp(slot))
	}
	return r, true
}

func stamp(t time.Time) string { return lifeboat.FormatTime(t) }

func ago(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() }

func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Second).String()
}
