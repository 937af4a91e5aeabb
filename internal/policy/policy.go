// Package policy reads Lifeboat's policy file: the YAML document that names
// the repositories backups go to, the service tiers and the assets to protect.
//
// Reading is strict so that a typo fails loudly instead of silently dropping
// a setting: unknown keys and wrongly typed values are errors, ${NAME}
// references to unset environment variables are errors, and Validate reports
// every remaining problem at once, each pinned to the file, line and field.
// Secrets such as passphrases are held in the Secret type, which redacts
// itself wherever it is printed or serialised.
//
// The package knows the keys every asset shares (name, kind, tier,
// repositories, retention, schedule, hooks, drill). The other keys of an
// asset belong to its kind, which reads and checks them through a Section
// (KindDecoder); the kinds are passed in by whoever loads the policy
// (internal/app, with its registry), so a policy is always read knowing
// every kind it may name.
//
// The package only translates the file into data; turning that data into
// repositories, backends and sources is the job of internal/app.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// Policy is a parsed and validated policy file.
type Policy struct {
	// Source names where the policy came from (normally its path); error
	// messages are prefixed with it.
	Source string
	// StateDir holds what Lifeboat keeps on this host: the queue of WAL
	// files still to reach the copy repositories. A relative state_dir is
	// resolved against the policy file's directory.
	StateDir string
	// StateDirDefault says the policy does not set state_dir: StateDir is
	// DefaultStateDir, which the caller may replace with the user's own
	// state directory when this user cannot write it.
	StateDirDefault bool
	// User is the OS user Lifeboat runs as on this host (the one that
	// runs archive_command): commands that write a repository or state_dir
	// refuse to run as anyone else, so nothing ends up unreadable to it.
	// "" leaves the rule to the owners of state_dir and file:// repositories.
	User         string
	Repositories []Repository
	Tiers        map[string]Tier
	Assets       []Asset
	// Alerts are where problems found by check are sent.
	Alerts []Alert
	// Check says how often serve checks every asset's health and how late
	// a scheduled backup or drill may be before it counts as missed.
	Check Check
	// MetricsListen is the address serve exposes /metrics on; "" when it
	// exposes none.
	MetricsListen string
	// Approvals are the actions that wait for approval, and who approves;
	// nil when the policy has no approvals section (approvals.go).
	Approvals *Approvals
	// Audit is the audit trail's retention and syslog (audit.go).
	Audit Audit
	// Web is the dashboard's listener and sessions (web.go).
	Web Web
	// Groups name sets of assets (a platform exercise of one group);
	// PlatformDrill is the scheduled platform exercise, nil when none
	// (platform.go).
	Groups        map[string][]string
	PlatformDrill *PlatformDrill
	// Runbook is where serve keeps the generated runbook (runbook.go).
	Runbook Runbook
	// Report is where serve keeps the DR report (reportfile.go).
	Report ReportFile
	// Fleet is the shared catalog and this agent's name in it (fleet.go);
	// its Catalog is empty when runs are kept in SQLite only.
	Fleet Fleet
	// DrillHost is the agent that runs the scheduled drills, "" when
	// every agent runs its own (drillhost.go).
	DrillHost string

	// kinds are the kinds this policy was read with; nil for a policy
	// built in code, whose kinds Validate takes as they are.
	kinds Kinds

	// envRefs are the environment variables the policy refers to outside
	// its alerts (see EnvRefs).
	envRefs map[string]bool

	// lines maps a field path such as "assets[0].tier" to the line it was
	// written on, so that Validate can point at the exact line.
	lines map[string]int
}

// EnvRefs are the names of the environment variables the policy refers to
// (${NAME}) outside its alerts: what a child that loads the same policy
// to reach a repository (a restored server's restore_command, lifeboat
// wal-fetch) needs from the environment, and no alert's secret.
func (p *Policy) EnvRefs() []string {
	return slices.Sorted(maps.Keys(p.envRefs))
}

// DefaultStateDir is StateDir when the policy does not set state_dir.
const DefaultStateDir = "/var/lib/lifeboat"

// Repository is a place backups are written to.
type Repository struct {
	Name string
	// URL locates the repository: file:///absolute/path, or
	// s3://bucket/prefix?endpoint=...&region=...&path_style=true.
	URL string
	// KeyFile is the absolute path of a file holding the repository key.
	// A relative path in the policy file is resolved against the
	// directory of the policy file. Exactly one of KeyFile and Passphrase
	// is set.
	KeyFile string
	// Passphrase unlocks the repository key.
	Passphrase Secret
	// IdentityFile is the absolute path of the identity (private key) that
	// reads the contents of a public-key repository (docs/keys.md);
	// IdentityPassphrase or IdentityKeyFile (exactly one) unlocks it. Only
	// restore hosts set them.
	IdentityFile       string
	IdentityPassphrase Secret
	IdentityKeyFile    string
	// AccessKey and SecretKey are S3 credentials; when unset the
	// environment, shared profile or instance role is used.
	AccessKey Secret
	SecretKey Secret
	// ObjectLock is "compliance" or "governance" when every object is
	// written under S3 Object Lock, "" otherwise.
	ObjectLock string
	// MinRetention is the floor under every asset's retention in this
	// repository: expire never deletes a snapshot younger than this.
	MinRetention Duration
	// LockFor is how long each new object stays locked when ObjectLock is
	// set, derived from the retention of the assets using the repository.
	LockFor Duration
	// Role is the role the repository's credential is given in the store (RoleBackup, ...; role.go),
	// "" when the policy does not say.
	Role string
	// Line is where the repository is declared; 0 when unknown.
	Line int
	// WriteAsOwner is not read from the file: the command line sets it
	// (--as-owner) to let root write a file:// repository another user
	// owns, on that user's behalf.
	WriteAsOwner bool
}

// Tier is a service tier as written in the policy: the recovery point and
// recovery time objectives its assets are held to.
type Tier struct {
	RPO Duration // most data, measured in time, a recovery may lose
	RTO Duration // longest a recovery may take
}

// Asset is one thing to back up.
type Asset struct {
	Name string
	Kind lifeboat.AssetKind
	// Tier names an entry of Policy.Tiers; empty when the asset has none.
	Tier string
	// Repositories names the repositories the asset is backed up to, at
	// least one.
	Repositories []string
	// Retention says which snapshots and WAL expire keeps; the zero value
	// keeps everything.
	Retention Retention
	// Schedule is when the daemon backs the asset up: a cron expression
	// (five fields, or a descriptor such as @daily), optionally prefixed
	// with CRON_TZ=<IANA zone>; "" when only run by hand.
	Schedule string
	// Hooks run before and after each backup of the asset.
	Hooks Hooks
	// Drill says how the asset's restores are rehearsed; nil when the
	// policy sets none (a drill can still be run by hand).
	Drill *Drill
	// Production marks the asset whose own location is production: a
	// restore onto it needs approval when the policy protects
	// restore_production.
	Production bool

	// Config is what the asset's kind read from the keys that are its
	// own (KindDecoder), typed by the kind: postgres.Config, files.Config,
	// ...; nil for a kind without keys of its own. Only the kind's
	// package reads it.
	Config any

	// Line is where the asset is declared; 0 when unknown.
	Line int
}

// Hooks are commands run (through /bin/sh -c) around a backup: a failing
// pre hook stops the run; the post hook runs whatever happened.
type Hooks struct {
	Pre     string
	Post    string
	Timeout Duration // for each hook; 0 means DefaultHookTimeout
}

// Drill is an asset's restore drill: when it runs, to which point, from
// which repository, and the queries that must hold on the restored copy.
type Drill struct {
	Schedule   string // cron, as Asset.Schedule; "" when only run by hand
	Point      string // DrillLatest or DrillRandom
	Repository string // "" means the asset's first repository
	Checks     []ValidationQuery
	Line       int
}

// Drill points.
const (
	DrillLatest = "latest" // the newest point the repository can restore
	DrillRandom = "random" // a random point of the restorable range
)

// ValidationQuery is one validation query of a drill.
type ValidationQuery struct {
	Name string
	SQL  string
	// Database is the database the query runs in (postgres and pg_dump
	// assets); "" means the DSN's, or the dump's only database.
	Database string
	Expect   Expectation
	Line     int
}

// Expectation is what a check's query must return: a single boolean
// true, a number at least Min, or a value equal to Value or to the one
// recorded when the backup was taken.
type Expectation struct {
	Kind  ExpectKind
	Min   int64  // ExpectAtLeast
	Value string // ExpectEqual
}

// ExpectKind is the kind of an Expectation.
type ExpectKind string

// Expectation kinds.
const (
	ExpectTrue     ExpectKind = "true"     // expect: true (the default)
	ExpectAtLeast  ExpectKind = "at_least" // expect: ">= 1000"
	ExpectEqual    ExpectKind = "equal"    // expect: "= 42"
	ExpectRecorded ExpectKind = "recorded" // expect: "= recorded"
)

// String writes the expectation the way the policy does.
func (e Expectation) String() string {
	switch e.Kind {
	case ExpectAtLeast:
		return fmt.Sprintf(">= %d", e.Min)
	case ExpectEqual:
		return "= " + e.Value
	case ExpectRecorded:
		return "= recorded"
	}
	return "true"
}

// Alert is one destination for alerts.
type Alert struct {
	Kind AlertKind
	// Name tells alerts of one kind apart in logs; defaults to the kind.
	Name string
	// URL is the Slack incoming webhook, the PagerDuty Events API v2
	// endpoint or the generic webhook's address.
	URL string
	// RoutingKey is the PagerDuty integration key.
	RoutingKey Secret
	// Secret signs generic webhook bodies (HMAC-SHA256).
	Secret Secret
	// SMTP is the mail server's host:port; TLS is "starttls" (default),
	// "tls" (implicit, port 465) or "none".
	SMTP     string
	TLS      string
	Username string
	Password Secret
	From     string
	To       []string
	// Repeat is how often an alert is sent again while its problem
	// lasts; DefaultAlertRepeat when the policy leaves it out, and 0
	// (written) sends each problem once.
	Repeat Duration
	// Unresolved lists the ${NAME} references of this alert whose
	// variables were not set when the policy was read (with file and
	// line). Only commands that send alerts refuse them; see convert.go.
	Unresolved []string
	Line       int
}

// AlertKind is the kind of an alert destination.
type AlertKind string

// Alert kinds.
const (
	AlertSlack     AlertKind = "slack"
	AlertPagerDuty AlertKind = "pagerduty"
	AlertWebhook   AlertKind = "webhook"
	AlertEmail     AlertKind = "email"
)

// DefaultAlertRepeat is how often an open problem is sent again when the
// policy does not say.
const DefaultAlertRepeat = 4 * time.Hour

// DefaultPagerDutyURL is the PagerDuty Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Check is how serve watches health.
type Check struct {
	// Interval is how often serve runs the check; Grace how long after a
	// scheduled slot its backup or drill may still be running before the
	// slot counts as missed.
	Interval Duration
	Grace    Duration
}

// Defaults of Check.
const (
	DefaultCheckInterval = time.Minute
	DefaultCheckGrace    = time.Hour
)

// DefaultHookTimeout bounds a hook when the policy sets no timeout.
const DefaultHookTimeout = 10 * time.Minute

// Retention is an asset's retention as written in the policy; see
// docs/retention.md for what each rule keeps.
type Retention struct {
	PITRWindow Duration // restore to any moment of this window
	KeepWithin Duration // keep every snapshot this young
	Daily      int
	Weekly     int
	Monthly    int
	Yearly     int
	// TimeZone is the IANA zone whose calendar days, weeks, months and
	// years the GFS counts use; "" means UTC.
	TimeZone string
}

// IsZero reports whether no rule is set: such an asset is never expired.
func (r Retention) IsZero() bool {
	return r.PITRWindow == 0 && r.KeepWithin == 0 && r.Daily == 0 && r.Weekly == 0 && r.Monthly == 0 && r.Yearly == 0
}

func readPolicy(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return data, nil
}

var lookupEnv = os.LookupEnv

// baseDir is the absolute directory relative key_file paths are resolved
// against, so they stay right even if the process later changes directory.
func baseDir(source string) string {
	dir := filepath.Dir(source)
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// parse is Parse with the directory and the environment passed in, so
// tests need not touch the process environment.
func parse(data []byte, source, base string, lookupEnv func(string) (string, bool), kinds Kinds) (*Policy, error) {
	doc, err := parseDocument(data, source)
	if err != nil {
		return nil, err
	}
	idx := newNodeIndex(doc)
	c := &converter{source: source, base: base, lookupEnv: lookupEnv, idx: idx, failed: map[string]bool{}, kinds: kinds}

	var raw fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var shape []*FieldError
	if err := dec.Decode(&raw); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, syntaxError(source, err)
		}
		shape = idx.rewriteTypeErrors(source, te)
	}
	// A value of the wrong shape or an unknown key stops the reading
	// here, before a field left empty by it is called missing. yaml.v3
	// does not see into the keys of the assets' kinds: the kinds' own
	// reading says what is wrong with them.
	unknown, skip := c.unknownKeys(&raw)
	if len(shape) > 0 || len(unknown) > 0 {
		c.kindSections(&raw, skip)
		return nil, joinProblems(slices.Concat(shape, unknown, c.problems))
	}

	p := c.convert(&raw)
	problems := c.problems
	for _, fe := range p.problems() {
		if !c.covers(fe.Path) {
			problems = append(problems, fe)
		}
	}
	if len(problems) > 0 {
		return nil, joinProblems(problems)
	}
	for i := range p.Repositories {
		if p.Repositories[i].ObjectLock != "" {
			p.Repositories[i].LockFor = p.lockFor(&p.Repositories[i])
		}
	}
	return p, nil
}

// lockFor is how long a new object in rp is certainly needed: the longest
// of the windows its assets keep everything for, and its floor. Expire
// extends the lock of what weekly, monthly and yearly rules keep longer.
func (p *Policy) lockFor(rp *Repository) Duration {
	const day = Duration(24 * time.Hour)
	d := max(rp.MinRetention, day)
	for _, a := range p.Assets {
		if !slices.Contains(a.Repositories, rp.Name) {
			continue
		}
		r := a.Retention
		// A WAL segment archived now is needed until the window has
		// moved past the next backup: a day of slack covers nightly ones.
		d = max(d, r.KeepWithin, Duration(r.Daily)*day)
		if r.PITRWindow > 0 {
			d = max(d, r.PITRWindow+day)
		}
	}
	return d
}

// parseDocument reads the YAML syntax tree, which is kept to map decode
// errors and fields back to lines. It rejects empty input and streams of
// more than one document, whose later documents would otherwise be ignored.
func parseDocument(data []byte, source string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Source: source, Msg: "the policy file is empty"}
		}
		return nil, syntaxError(source, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, &FieldError{Source: source, Line: doc.Line, Msg: "the policy file is empty"}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(source, err)
	default:
		line := extra.Line
		if len(extra.Content) > 0 {
			line = extra.Content[0].Line
		}
		return nil, &FieldError{Source: source, Line: line, Msg: "the policy file must hold a single YAML document; remove this second one"}
	}
	return doc.Content[0], nil
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Asset returns the asset called name.
func (p *Policy) Asset(name string) (*Asset, error) {
	for i := range p.Assets {
		if p.Assets[i].Name == name {
			return &p.Assets[i], nil
		}
	}
	names := make([]string, len(p.Assets))
	for i, a := range p.Assets {
		names[i] = a.Name
	}
	return nil, fmt.Errorf("unknown asset %q (known: %s)", name, knownList(names))
}

// Repository returns the repository called name.
func (p *Policy) Repository(name string) (*Repository, error) {
	for i := range p.Repositories {
		if p.Repositories[i].Name == name {
			return &p.Repositories[i], nil
		}
	}
	return nil, fmt.Errorf("unknown repository %q (known: %s)", name, knownList(p.repositoryNames()))
}

// AssetRepositories returns the repositories asset a is backed up to, in
// the order the policy lists them.
func (p *Policy) AssetRepositories(a *Asset) ([]*Repository, error) {
	repos := make([]*Repository, 0, len(a.Repositories))
	for _, name := range a.Repositories {
		r, err := p.Repository(name)
		if err != nil {
			return nil, fmt.Errorf("asset %q: %w", a.Name, err)
		}
		repos = append(repos, r)
	}
	return repos, nil
}

func (p *Policy) repositoryNames() []string {
	names := make([]string, len(p.Repositories))
	for i, r := range p.Repositories {
		names[i] = r.Name
	}
	return names
}

// knownList formats names for a "known: ..." hint, in file order and
// without repeats.
func knownList(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	var uniq []string
	for _, n := range names {
		if !slices.Contains(uniq, n) {
			uniq = append(uniq, n)
		}
	}
	return strings.Join(uniq, ", ")
}

// UsesRepository reports whether the asset is backed up to the
// repository called name (as its primary or a copy).
func (a *Asset) UsesRepository(name string) bool { return slices.Contains(a.Repositories, name) }

// PrimaryOf is the primary repository of an asset that lists the
// repository called name as a copy; nil when no asset does.
func (p *Policy) PrimaryOf(name string) *Repository {
	for i := range p.Assets {
		a := &p.Assets[i]
		for j, n := range a.Repositories {
			if j > 0 && n == name {
				if primary, err := p.Repository(a.Repositories[0]); err == nil {
					return primary
				}
			}
		}
	}
	return nil
}
