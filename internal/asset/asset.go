// Package asset is the shape every kind of asset takes: the Kind interface
// each kind (postgres, pg_dump, sqlite, files, git, bucket) implements, the
// optional capabilities a kind may add (point-in-time recovery, diff,
// export), and the registry that maps a policy's `kind:` to its Kind.
//
// The application service (internal/app) drives kinds only through this
// package: no command or daemon job switches on a kind's name. A new kind
// is one package implementing Kind and one line in the registry.
package asset

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Kind backs up, restores and drills one kind of asset.
type Kind interface {
	// Name is the policy's `kind:` value.
	Name() lifeboat.AssetKind
	// Backup stores one snapshot of the asset in b.Repo and returns it.
	// It records nothing when it fails: a half-read source leaves no
	// snapshot behind.
	Backup(ctx context.Context, b *Backup) (*repo.Snapshot, error)
	// RestoreFlags are the restore flags the kind takes beyond the
	// common ones (CommonRestoreFlags). A flag of another kind set on
	// the command line is refused before Restore is called.
	RestoreFlags() []Flag
	// Restore brings a snapshot back as r asks. r.Snapshot is nil for a
	// kind that picks its own (one with point-in-time recovery).
	Restore(ctx context.Context, r *Restore) (*Restored, error)
	// Drill restores into the throwaway target d offers and checks what
	// came back, recording phases and checks in d.
	Drill(ctx context.Context, d Drill) error
}

// Optional capabilities, found by type assertion (as storage.Retainer is).

// PITR is a kind with point-in-time recovery through a WAL archive. Its
// Restore gets no Snapshot: it chooses the one consistent before the
// target itself.
type PITR interface {
	Kind
	// NewestWAL is the newest archived WAL file of the asset in r and
	// when it was archived; "" when there is none.
	NewestWAL(ctx context.Context, r *repo.Repository, asset string) (name string, at time.Time, err error)
	// WALPrefix is where the asset's archived WAL lives in a repository,
	// for measuring how far a copy lags.
	WALPrefix(asset string) string
	// Archiving asks the source how far archiving lags, given the newest
	// WAL the repository holds.
	Archiving(ctx context.Context, a *policy.Asset, newestWAL string, newestAt, now time.Time) *Archiving
	// VerifyArchive checks the asset's archive in r (no gaps, every
	// snapshot's WAL present; with readData every file read): how many
	// files it holds and what is wrong.
	VerifyArchive(ctx context.Context, r *repo.Repository, asset string, readData bool) (files int, problems []string, err error)
	// RestorePoint records a named point a restore can target.
	RestorePoint(ctx context.Context, r *repo.Repository, a *policy.Asset, name string) (*RestorePoint, error)
	// SnapshotPoint is the moment a snapshot is consistent at and its
	// timeline: what retention orders the kind's snapshots by, since the
	// manifest's end time is when the backup finished, not what it holds.
	SnapshotPoint(s *repo.Snapshot) (at time.Time, timeline uint32, err error)
	// ExpireArchive deletes the archived logs of asset in r that no kept
	// snapshot needs, and says what it kept and removed.
	ExpireArchive(ctx context.Context, r *repo.Repository, asset string, o ArchiveExpiry) ([]ArchiveRange, error)
	// Windows are what r can restore of asset, whose snapshots in r are
	// snaps, one per timeline of its history; work is a directory for what
	// reading them needs.
	Windows(ctx context.Context, r *repo.Repository, asset string, snaps []*repo.Snapshot, work string) ([]RecoveryWindow, error)
	// RestorePoints are the named points recorded for asset in r.
	RestorePoints(ctx context.Context, r *repo.Repository, asset string) ([]RestorePoint, error)
}

// RecoveryWindow is what a repository can restore on one timeline: any
// moment from Earliest, when its oldest usable snapshot is consistent, to
// Latest, the last the archive reaches without a gap.
type RecoveryWindow struct {
	Timeline         uint32    `json:"timeline"`
	Snapshots        int       `json:"snapshots"`
	EarliestSnapshot string    `json:"earliest_snapshot"`
	EarliestTime     time.Time `json:"earliest_time"`
	EarliestPosition string    `json:"earliest_lsn"`
	LatestTime       time.Time `json:"latest_time"`
	// LatestExact says LatestTime is the newest commit read from the log;
	// otherwise it is when the last log file was stored, a bound.
	LatestExact    bool   `json:"latest_exact"`
	LatestPosition string `json:"latest_lsn"`
	LatestLog      string `json:"latest_wal"`
	// Gap names the first log file missing while later ones are stored:
	// recovery stops there.
	Gap string `json:"gap,omitempty"`
}

// ArchiveExpiry says which of an asset's archived logs stay.
type ArchiveExpiry struct {
	// Kept are the snapshots retention keeps; Base is the one point-in-time
	// recovery of the window starts from (nil when the asset has no window:
	// then the log from the newest kept snapshot on is kept, so a restore
	// to the latest moment works).
	Kept   []*repo.Snapshot
	Base   *repo.Snapshot
	DryRun bool
	// KeepUntil extends the retention of the log a kept snapshot needs to
	// the snapshot's own date, on stores with object lock.
	KeepUntil map[repo.ID]time.Time
}

// ArchiveRange is a run of archived log files of one timeline that expire
// treats alike.
type ArchiveRange struct {
	Timeline uint32    `json:"timeline"`
	First    string    `json:"first"`
	Last     string    `json:"last"`
	Files    int       `json:"files"`
	Keep     bool      `json:"keep"`
	Rule     string    `json:"rule"`
	Until    time.Time `json:"retained_until,omitzero"` // under retention: deletable from then
	Deleted  int       `json:"deleted"`
}

// RestorePoint is a named point of an asset's history.
type RestorePoint struct {
	Name     string    `json:"name"`
	LSN      string    `json:"lsn"`
	Time     time.Time `json:"time"`
	Timeline uint32    `json:"timeline,omitempty"`
}

// Archiving is the state of an asset's WAL archiving.
type Archiving struct {
	// LagSeconds is the age of the oldest WAL not yet archived (0 when
	// every complete segment is).
	LagSeconds float64
	// Detail says how the lag was found.
	Detail string
	// Failing is the archiver's last failure, when newer than its last
	// success.
	Failing string
}

// Describer adds what only the kind can read from a snapshot's details
// to a snapshot listing.
type Describer interface {
	Kind
	Describe(s *repo.Snapshot) Description
}

// Description is what a Describer reads from a snapshot.
type Description struct {
	Name              string // a name operators use (a dump's <asset>_<date>)
	StartLSN, StopLSN string // PostgreSQL: the WAL range
	Timeline          uint32
	// StopTime is when the snapshot is consistent; zero: its end time.
	StopTime time.Time
}

// Differ compares two snapshots of an asset.
type Differ interface {
	Kind
	Diff(ctx context.Context, r *repo.Repository, from, to *repo.Snapshot) (DiffResult, error)
}

// DiffResult is what a Differ found; marshalled as JSON for --json.
type DiffResult interface {
	// WriteText writes the changes for a person to read.
	WriteText(w io.Writer, from, to *repo.Snapshot)
}

// Exporter writes a snapshot out in the asset's native format (for a
// logical dump, the archive pg_restore reads).
type Exporter interface {
	Kind
	// Export writes s to o.Out and returns the summary line.
	Export(ctx context.Context, r *repo.Repository, s *repo.Snapshot, o ExportOptions) (string, error)
}

// ExportOptions shape an export.
type ExportOptions struct {
	Out      string // the file to create; must not exist
	Database string // the dumped database, when there are several
	Globals  bool   // the globals instead of a database
}

// Configurer is a kind that reads its own keys of the asset's policy
// entry (policy.KindDecoder); its typed configuration is in
// policy.Asset.Config.
type Configurer interface {
	Kind
	policy.KindDecoder
}

// Backup is one backup to take.
type Backup struct {
	Asset *policy.Asset
	Repo  *repo.Repository
	// Full reads everything again, not only what changed since the last
	// snapshot (for kinds that can tell).
	Full     bool
	Workers  int
	LockWait time.Duration
	// StateDir is where Lifeboat keeps what it needs on this host
	// between runs (mirrors, temporary copies): the policy's state_dir.
	StateDir string
	// PolicyPath is the policy file this run uses, as the commands a
	// source runs to reach Lifeboat (archive_command) must name it.
	PolicyPath string
	// ArchiveTimeout bounds how long a kind with an archive waits for the
	// archive to hold what the snapshot needs (0: the kind's default).
	ArchiveTimeout time.Duration
	// CheckBlocks asks a kind that derives incrementals from a log (the
	// PostgreSQL WAL) to prove them against a full read.
	CheckBlocks bool
	Log         *slog.Logger
	// Progress receives the state of the work now and then; never nil.
	Progress func(Progress)
	// Warn receives operator-facing warnings (skipped files, bad page
	// checksums) that must reach cron mail whatever the log level; never
	// nil.
	Warn func(string)
	// What is set by the kind to what the summary line calls the
	// snapshot ("full", "incr"); "" shows the kind's name.
	What string
	// Summary is set by the kind to the kind-specific tail of the line a
	// backup ends with (e.g. "LSN 0/2000028..0/2000100"), or left empty.
	Summary string
}

// Progress is how far a backup or restore has come: a line that says
// what it does, and the bytes done of a total, from which a terminal
// shows a rate and, when Total is known, the time left.
type Progress struct {
	Line  string
	Done  int64 // bytes read (backup) or written (restore) so far
	Total int64 // bytes in all; 0 when not known in advance
}

// Restore is one restore to perform.
type Restore struct {
	Asset *policy.Asset
	Repo  *repo.Repository
	// Repository is the name of Repo in the policy ("" for the primary);
	// PostgreSQL's restore_command fetches WAL from the same one.
	Repository string
	// Snapshot is the snapshot to restore; nil for a PITR kind, which
	// chooses by Target and SnapshotID.
	Snapshot   *repo.Snapshot
	SnapshotID string
	To         string // --to, absolute when not "" and not a URL
	Workers    int
	UID, GID   int // -1: the recorded owners
	Flags      FlagValues
	Log        *slog.Logger
	Progress   func(Progress)
	// SelfCommand is how the restored asset calls this lifeboat back
	// (PostgreSQL's restore_command).
	SelfCommand func(args ...string) (string, error)
	// SelfEnv is the environment a server the restore starts itself (a
	// table-level restore's throwaway one) needs for SelfCommand to reach
	// the repository (see childenv.Self), and nothing more of this
	// process's own.
	SelfEnv []string
}

// Restored is what a restore did, for the CLI to print.
type Restored struct {
	Snapshot *repo.Snapshot
	// Lines are the summary the operator reads, one sentence a line.
	Lines []string
}

// Drill is one drill under way (implemented by internal/drill): what is
// drilled, the throwaway work directory, the clock, and the report the
// kind fills as it restores and checks.
type Drill interface {
	Asset() *policy.Asset
	Repo() *repo.Repository
	// Report is the report under way: the kind sets what only it can
	// measure (target, recovered point, snapshot, bytes, WAL files).
	Report() *evidence.DrillReport
	// Point is where the drill restores to: policy.DrillLatest,
	// policy.DrillRandom, PointTime (at) or PointSnapshot (snapshot).
	Point() (point string, at time.Time, snapshot string)
	Now() time.Time
	Workers() int
	Log() *slog.Logger
	// WorkDir is an empty private directory, removed after the drill.
	WorkDir() string
	// RunAs is the OS user throwaway servers run as when the drill runs
	// as root ("": the data directory's owner, else postgres).
	RunAs() string
	// RestoreCommand is how a restored PostgreSQL fetches WAL from the
	// drill's repository, treating segments after until as not archived.
	RestoreCommand(until string) (string, error)
	// RestoreEnv is the environment a restored server needs for
	// RestoreCommand to reach the repository (see childenv.Self), and
	// nothing more of the drill's own.
	RestoreEnv() []string
	// Cleanup registers a teardown step, run in order after the drill
	// whatever happened.
	Cleanup(func())
	// PickSnapshot chooses the snapshot to restore as Point says (named,
	// newest, random, before a time) and records its times as the
	// drill's target and recovered point.
	PickSnapshot(ctx context.Context) (*repo.Snapshot, error)
	// Phase closes the phase under way now, naming it (evidence.Phase*);
	// PhaseEnded closes it at a moment the kind measured.
	Phase(name string)
	PhaseEnded(name string, at time.Time)
	// Integrity records one integrity check's outcome (pg_amcheck,
	// PRAGMA integrity_check, git fsck, checksums read back).
	Integrity(c IntegrityCheck)
	// Queries runs the policy's validation queries through q; database
	// maps a check's database ("" for the default) to the one to use.
	Queries(ctx context.Context, database func(string) string, q Querier)
}

// Drill points beside policy.DrillLatest and policy.DrillRandom.
const (
	PointTime     = "time"     // a moment given on the command line
	PointSnapshot = "snapshot" // a snapshot given on the command line
)

// IntegrityCheck is one integrity check's outcome in a drill. (The
// policy's validation queries are the other kind of drill check; health
// checks are another thing again: internal/health.)
type IntegrityCheck struct {
	Name    string
	Passed  bool
	Got     string
	Expect  string
	Detail  string
	Seconds float64
}

// Querier runs one validation query on a restored target and returns its
// single value as text.
type Querier interface {
	QueryValue(ctx context.Context, database, sql string) (value string, null bool, err error)
}

// Flag is a restore flag a kind takes.
type Flag struct {
	Name  string // without the dashes
	Usage string
	Type  FlagType
}

// FlagType is the type of a flag's value.
type FlagType int

// Flag types.
const (
	FlagString FlagType = iota
	FlagBool
	FlagStrings // repeatable
)

// FlagValues are the kind-specific restore flags given on the command
// line, by name; a flag absent here was not given.
type FlagValues map[string]any

// String is a string flag's value, "" when not given.
func (v FlagValues) String(name string) string { s, _ := v[name].(string); return s }

// Bool is a bool flag's value.
func (v FlagValues) Bool(name string) bool { b, _ := v[name].(bool); return b }

// Strings is a repeatable flag's values.
func (v FlagValues) Strings(name string) []string { s, _ := v[name].([]string); return s }

// Refuse is a usage error naming the first flag in v that the kind does
// not take, or nil.
func Refuse(k Kind, v FlagValues) error {
	takes := k.RestoreFlags()
	var names []string
	for _, f := range takes {
		names = append(names, "--"+f.Name)
	}
	given := make([]string, 0, len(v))
	for name := range v {
		given = append(given, name)
	}
	sort.Strings(given)
	for _, name := range given {
		if !slices.ContainsFunc(takes, func(f Flag) bool { return f.Name == name }) {
			what := "no flags of their own"
			if len(names) > 0 {
				what = strings.Join(names, ", ")
			}
			return Usagef("--%s does not apply to %s assets (they take %s)", name, k.Name(), what)
		}
	}
	return nil
}

// UsageError marks an error in how Lifeboat was called or configured: the
// CLI exits 2 for it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// IsUsage reports whether err is a usage error.
func IsUsage(err error) bool {
	var ue *UsageError
	return errors.As(err, &ue)
}

// Registry maps kind names to kinds.
type Registry struct{ kinds map[lifeboat.AssetKind]Kind }

// NewRegistry makes a registry of the given kinds.
func NewRegistry(kinds ...Kind) *Registry {
	r := &Registry{kinds: map[lifeboat.AssetKind]Kind{}}
	for _, k := range kinds {
		if _, dup := r.kinds[k.Name()]; dup {
			panic("asset: kind " + string(k.Name()) + " registered twice")
		}
		r.kinds[k.Name()] = k
	}
	return r
}

// Kind finds a kind by name.
func (r *Registry) Kind(name lifeboat.AssetKind) (Kind, error) {
	k, ok := r.kinds[name]
	if !ok {
		return nil, Usagef("kind %q is not known (known: %s)", name, strings.Join(r.Names(), ", "))
	}
	return k, nil
}

// Names are the registered kinds' names, sorted.
func (r *Registry) Names() []string {
	var out []string
	for n := range r.kinds {
		out = append(out, string(n))
	}
	sort.Strings(out)
	return out
}

// Kinds are the registered kinds, sorted by name.
func (r *Registry) Kinds() []Kind {
	var out []Kind
	for _, n := range r.Names() {
		out = append(out, r.kinds[lifeboat.AssetKind(n)])
	}
	return out
}

// Decoders are every kind the policy may name, with the decoder of those
// that read their own keys (nil for a kind that takes none), for
// policy.Load.
func (r *Registry) Decoders() policy.Kinds {
	out := policy.Kinds{}
	for name, k := range r.kinds {
		out[name] = nil
		if c, ok := k.(Configurer); ok {
			out[name] = c
		}
	}
	return out
}

// Describe is what the snapshot's kind reads from its details; only the
// stop time (the end time) for a kind that says nothing more.
func (r *Registry) Describe(snap *repo.Snapshot) Description {
	d := Description{}
	if dk, ok := r.kinds[lifeboat.AssetKind(snap.Kind)].(Describer); ok {
		d = dk.Describe(snap)
	}
	if d.StopTime.IsZero() {
		d.StopTime = snap.EndTime
	}
	return d
}

// RestoreFlags are every kind's restore flags, each name once, sorted,
// the usage saying which kinds take it: the CLI declares them all and
// lets Refuse turn away the wrong ones.
func (r *Registry) RestoreFlags() []Flag {
	byName := map[string]*Flag{}
	var out []*Flag
	for _, k := range r.Kinds() {
		for _, f := range k.RestoreFlags() {
			usage := string(k.Name()) + ": " + f.Usage
			if have, ok := byName[f.Name]; ok {
				have.Usage += "; " + usage
				continue
			}
			f.Usage = usage
			byName[f.Name] = &f
			out = append(out, &f)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	flags := make([]Flag, len(out))
	for i, f := range out {
		flags[i] = *f
	}
	return flags
}

// HumanBytes writes a size the way every summary line does: "1.5 GiB".
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Plural writes a count with its noun: "1 ref", "3 refs".
func Plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
}

// ParseTime reads a point in time given on the command line (a recovery
// or drill target), which must carry a zone.
func ParseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if strings.HasSuffix(l, "MST") && t.Location() != time.UTC && t.Location().String() != "UTC" {
				// Go accepts unknown zone abbreviations with offset zero;
				// only UTC is unambiguous.
				continue
			}
			return t, nil
		}
	}
	return time.Time{}, Usagef("--time %q: want a time with a zone, like 2026-11-23 03:00:00+08 or 2026-11-22T19:00:00Z", s)
}
