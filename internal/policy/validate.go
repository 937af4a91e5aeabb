package policy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// FieldError is one problem in a policy, pinned to where it is written.
type FieldError struct {
	Source string // the policy file; may be empty
	Line   int    // 1-based; 0 when unknown
	Path   string // the field, e.g. "assets[0].repositories"; may be empty
	Msg    string
}

// Error formats the problem as "source:line: path: message", leaving out
// the parts that are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// namePattern is what repository, tier and asset names must match: they end
// up in object keys, file names and metric labels.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Validate checks the policy's meaning: names, references between sections,
// required fields and allowed values. It returns every problem found,
// joined with errors.Join, each a *FieldError naming the line (when the
// policy came from a file) and the field path. Load and Parse call it.
// The keys of the assets' kinds are checked by the kinds, when the policy
// is read; a policy built in code has its kind names taken as they are.
func (p *Policy) Validate() error {
	problems := p.problems()
	if len(problems) == 0 {
		return nil
	}
	return joinProblems(problems)
}

// checker collects problems, looking up each field's line.
type checker struct {
	p        *Policy
	problems []*FieldError
}

// add records a problem at path. fallback is the line to use when path was
// not written in the file, typically the line of the enclosing item.
func (c *checker) add(path string, fallback int, format string, args ...any) {
	line := fallback
	if l, ok := c.p.lines[path]; ok {
		line = l
	}
	c.problems = append(c.problems, &FieldError{Source: c.p.Source, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (c *checker) name(path string, line int, what, name string) {
	switch {
	case name == "":
		c.add(path, line, "%s name is required", what)
	case !namePattern.MatchString(name):
		c.add(path, line, "invalid %s name %q: use 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit", what, name)
	}
}

func (p *Policy) problems() []*FieldError {
	c := &checker{p: p}
	c.repositories()
	c.tiers()
	c.assets()
	c.alerts()
	c.monitoring()
	c.platform()
	return c.problems
}

func (c *checker) alerts() {
	for i := range c.p.Alerts {
		a := &c.p.Alerts[i]
		path := itemPath("alerts", i)
		if len(a.Unresolved) > 0 {
			continue // refused by whatever sends alerts, not here
		}
		needURL := func(key, what string) {
			if a.URL == "" {
				c.add(path+"."+key, a.Line, "%s is required for a %s alert", key, a.Kind)
			} else if err := CheckAlertURL(a.URL); err != nil {
				c.add(path+"."+key, a.Line, "%s %v (%s)", key, err, what)
			}
		}
		switch a.Kind {
		case AlertSlack:
			needURL("webhook_url", "the Slack incoming webhook")
		case AlertPagerDuty:
			needURL("url", "the PagerDuty Events API v2 endpoint")
			if a.RoutingKey == "" {
				c.add(path+".routing_key", a.Line, "routing_key is required for a pagerduty alert (the integration key of an Events API v2 service)")
			}
		case AlertWebhook:
			needURL("url", "where the signed JSON is posted")
			if a.Secret == "" {
				c.add(path+".secret", a.Line, "secret is required for a webhook alert: bodies are signed with HMAC-SHA256 so the receiver can trust them")
			}
		case AlertEmail:
			if _, _, err := net.SplitHostPort(a.SMTP); err != nil || a.SMTP == "" {
				c.add(path+".smtp", a.Line, "smtp must be the mail server as host:port, e.g. mail.example.com:587")
			}
			switch a.TLS {
			case "starttls", "tls", "none":
			default:
				c.add(path+".tls", a.Line, "tls must be starttls, tls or none, not %q", a.TLS)
			}
			if a.From == "" {
				c.add(path+".from", a.Line, "from is required for an email alert")
			}
			if len(a.To) == 0 {
				c.add(path+".to", a.Line, "to must list at least one address")
			}
			if (a.Username == "") != (a.Password == "") {
				c.add(path+".username", a.Line, "set both username and password, or neither")
			}
		case "":
			c.add(path+".kind", a.Line, "kind is required (slack, pagerduty, webhook or email)")
		default:
			c.add(path+".kind", a.Line, "unknown alert kind %q (known: slack, pagerduty, webhook, email)", a.Kind)
		}
		if a.Repeat < 0 {
			c.add(path+".repeat", a.Line, "repeat must not be negative (0 sends each problem once)")
		}
	}
}

func (c *checker) monitoring() {
	if _, written := c.p.lines["check.interval"]; c.p.Check.Interval < 0 || (written && c.p.Check.Interval == 0) {
		c.add("check.interval", 0, "interval must be greater than zero, e.g. 1m")
	}
	if c.p.Check.Grace < 0 {
		c.add("check.grace", 0, "grace must not be negative")
	}
	if l := c.p.MetricsListen; l != "" {
		if _, _, err := net.SplitHostPort(l); err != nil {
			c.add("metrics.listen", 0, "listen must be host:port, e.g. 127.0.0.1:9187")
		}
	}
}

func (c *checker) drill(path string, a *Asset) {
	d := a.Drill
	if d == nil {
		return
	}
	if d.Schedule != "" {
		if _, err := ParseSchedule(d.Schedule); err != nil {
			c.add(path+".schedule", d.Line, "%v", err)
		}
	}
	switch d.Point {
	case DrillLatest, DrillRandom:
	default:
		c.add(path+".point", d.Line, "point must be latest or random, not %q", d.Point)
	}
	if d.Repository != "" && !slices.Contains(a.Repositories, d.Repository) {
		c.add(path+".repository", d.Line, "repository %q is not one of the asset's repositories (%s)", d.Repository, knownList(a.Repositories))
	}
	seen := map[string]bool{}
	for j, ck := range d.Checks {
		cp := itemPath(path+".checks", j)
		switch {
		case ck.Name == "":
			c.add(cp+".name", ck.Line, "name is required: it names the check in drill reports and alerts")
		case seen[ck.Name]:
			c.add(cp+".name", ck.Line, "duplicate check name %q", ck.Name)
		}
		seen[ck.Name] = true
		if strings.TrimSpace(ck.SQL) == "" {
			c.add(cp+".sql", ck.Line, "sql is required: the query whose result is checked")
		}
		switch a.Kind {
		case lifeboat.KindPostgres, lifeboat.KindPGDump, lifeboat.KindSQLite:
		default:
			c.add(cp, ck.Line, "%s assets have no SQL to query: checks apply to postgres, pg_dump and sqlite assets", a.Kind)
		}
		if ck.Database != "" && a.Kind == lifeboat.KindSQLite {
			c.add(cp+".database", ck.Line, "database applies to postgres and pg_dump assets")
		}
		if ck.Expect.Kind == ExpectRecorded && a.Kind == lifeboat.KindPostgres {
			c.add(cp+".expect", ck.Line, "\"= recorded\" applies to pg_dump and sqlite assets, whose snapshots are one moment; a postgres drill restores to another moment than the backup's")
		}
	}
}

// uniqueName checks a name's form and that no earlier item of the list has
// it; seen maps the names so far to the lines they were declared on.
func (c *checker) uniqueName(seen map[string]int, path string, line int, kind, name string) {
	c.name(path, line, kind, name)
	if first, dup := seen[name]; dup && name != "" {
		c.add(path, line, "duplicate %s name %q (first declared on line %d)", kind, name, first)
	} else {
		seen[name] = c.lineOf(path, line)
	}
}

func (c *checker) repositories() {
	if len(c.p.Repositories) == 0 {
		c.add("repositories", 0, "at least one repository is required")
	}
	seen := map[string]int{}
	for i := range c.p.Repositories {
		r := &c.p.Repositories[i]
		path := itemPath("repositories", i)
		c.uniqueName(seen, path+".name", r.Line, "repository", r.Name)
		c.repositoryURL(path+".url", r.Line, r.URL)
		switch {
		case (r.AccessKey != "" || r.SecretKey != "") && !strings.HasPrefix(r.URL, "s3://"):
			c.add(path+".access_key", r.Line, "access_key and secret_key apply to s3 repositories only")
		case (r.AccessKey == "") != (r.SecretKey == ""):
			c.add(path+".access_key", r.Line, "set both access_key and secret_key, or neither (then the environment or shared profile is used)")
		}
		switch r.ObjectLock {
		case "", "compliance", "governance":
		default:
			c.add(path+".object_lock.mode", r.Line, "object_lock mode must be compliance or governance, not %q", r.ObjectLock)
		}
		if r.ObjectLock != "" && !strings.HasPrefix(r.URL, "s3://") {
			c.add(path+".object_lock", r.Line, "object_lock applies to s3 repositories only (the bucket must be created with Object Lock enabled)")
		}
		if r.MinRetention < 0 {
			c.add(path+".min_retention", r.Line, "min_retention must not be negative")
		}
		c.role(path, r)
		switch {
		case r.KeyFile != "" && r.Passphrase != "":
			c.add(path, r.Line, "set only one of key_file or passphrase")
		case r.KeyFile == "" && r.Passphrase == "":
			c.add(path, r.Line, "set key_file or passphrase to unlock the repository key")
		case r.KeyFile != "" && !filepath.IsAbs(r.KeyFile):
			c.add(path+".key_file", r.Line, "key_file %q must be an absolute path", r.KeyFile)
		}
		unlocks := 0
		if r.IdentityPassphrase != "" {
			unlocks++
		}
		if r.IdentityKeyFile != "" {
			unlocks++
		}
		if r.IdentityFile != "" && unlocks != 1 || r.IdentityFile == "" && unlocks != 0 {
			c.add(path, r.Line, "set identity_file with exactly one of identity_passphrase or identity_key_file (what the identity is sealed by)")
		}
	}
}

// repositoryURL checks a repository URL without ever echoing it whole: a
// URL can carry credentials.
func (c *checker) repositoryURL(path string, line int, raw string) {
	if raw == "" {
		c.add(path, line, "url is required, e.g. file:///var/lib/lifeboat/repo")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		msg := "malformed URL"
		if errors.As(err, &ue) {
			msg = "malformed URL: " + ue.Err.Error()
		}
		c.add(path, line, "%s", msg)
		return
	}
	switch {
	case u.Scheme == "" && filepath.IsAbs(raw):
		c.add(path, line, "repository URL has no scheme: write file://%s", raw)
	case u.Scheme == "":
		c.add(path, line, "repository URL has no scheme (supported: file, s3), e.g. file:///var/lib/lifeboat/repo")
	case u.Scheme == "s3":
		if u.Host == "" || u.User != nil || u.Fragment != "" {
			c.add(path, line, "s3 URL must name a bucket, e.g. s3://backups/ledger?region=eu-north-1")
		}
	case u.Scheme != "file":
		c.add(path, line, "unsupported repository URL scheme %q (supported: file, s3)", u.Scheme)
	case u.Opaque != "" || (u.Host != "" && u.Host != "localhost"):
		c.add(path, line, "file URL must hold an absolute path after three slashes, e.g. file:///var/lib/lifeboat/repo")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		c.add(path, line, "file URL must not have a user, query or fragment")
	case !strings.HasPrefix(u.Path, "/"):
		c.add(path, line, "file URL must hold an absolute path, e.g. file:///var/lib/lifeboat/repo")
	}
}

func (c *checker) tiers() {
	names := make([]string, 0, len(c.p.Tiers))
	for name := range c.p.Tiers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t := c.p.Tiers[name]
		path := childPath("tiers", name)
		line := c.lineOf(path, 0)
		c.name(path, line, "tier", name)
		for _, d := range []struct {
			key string
			v   Duration
		}{{"rpo", t.RPO}, {"rto", t.RTO}} {
			switch {
			case d.v == 0:
				c.add(path+"."+d.key, line, "%s is required and must be greater than zero, e.g. 5m, 1h or 7d", d.key)
			case d.v < 0:
				c.add(path+"."+d.key, line, "%s must be greater than zero, not %s", d.key, d.v)
			}
		}
	}
}

func (c *checker) assets() {
	if len(c.p.Assets) == 0 {
		c.add("assets", 0, "at least one asset is required")
	}
	seen := map[string]int{}
	for i := range c.p.Assets {
		a := &c.p.Assets[i]
		path := itemPath("assets", i)
		c.uniqueName(seen, path+".name", a.Line, "asset", a.Name)
		if a.Tier != "" {
			if _, ok := c.p.Tiers[a.Tier]; !ok {
				c.add(path+".tier", a.Line, "unknown tier %q (known: %s)", a.Tier, knownList(c.tierNames()))
			}
		}
		_, known := c.p.kinds[a.Kind]
		known = known || c.p.kinds == nil
		switch {
		case a.Kind == "":
			c.add(path+".kind", a.Line, "kind is required (known kinds: %s)", c.kindList())
		case !known:
			c.add(path+".kind", a.Line, "unknown asset kind %q (known kinds: %s)", a.Kind, c.kindList())
		case a.Kind != lifeboat.KindPostgres:
			if _, written := c.p.lines[path+".retention.pitr_window"]; written {
				c.add(path+".retention.pitr_window", a.Line, "pitr_window applies to postgres assets only (a %s asset has no WAL to replay)", a.Kind)
			}
		}
		c.schedule(path, a)
		c.drill(path+".drill", a)
		c.assetRepositories(path+".repositories", a)
		c.retention(path+".retention", a)
	}
}

func (c *checker) schedule(path string, a *Asset) {
	if a.Schedule != "" {
		if _, err := ParseSchedule(a.Schedule); err != nil {
			c.add(path+".schedule", a.Line, "%v", err)
		}
	}
	if a.Hooks.Timeout < 0 {
		c.add(path+".hooks.timeout", a.Line, "timeout must not be negative")
	}
}

func (c *checker) retention(path string, a *Asset) {
	r := a.Retention
	for _, d := range []struct {
		key string
		v   Duration
	}{{"pitr_window", r.PITRWindow}, {"keep_within", r.KeepWithin}} {
		if d.v < 0 {
			c.add(path+"."+d.key, a.Line, "%s must not be negative", d.key)
		}
	}
	if r.TimeZone != "" {
		if _, err := time.LoadLocation(r.TimeZone); err != nil {
			c.add(path+".time_zone", a.Line, "unknown time zone %q (use an IANA name such as Asia/Singapore or UTC)", r.TimeZone)
		}
	}
	if c.p.lines != nil {
		if _, written := c.p.lines[path]; written && r.IsZero() {
			c.add(path, a.Line, "retention names no rule: set pitr_window, keep_within, daily, weekly, monthly or yearly (leave retention out to keep everything)")
		}
	}
}

func (c *checker) assetRepositories(path string, a *Asset) {
	if len(a.Repositories) == 0 {
		c.add(path, a.Line, "list at least one repository to back the asset up to")
		return
	}
	known := c.p.repositoryNames()
	seen := map[string]bool{}
	for j, name := range a.Repositories {
		item := itemPath(path, j)
		fallback := c.lineOf(path, a.Line)
		switch {
		case name == "":
			c.add(item, fallback, "repository name is empty")
		case seen[name]:
			c.add(item, fallback, "repository %q is listed more than once", name)
		case !slices.Contains(known, name):
			c.add(item, fallback, "unknown repository %q (known: %s)", name, knownList(known))
		}
		seen[name] = true
	}
}

func (c *checker) lineOf(path string, fallback int) int {
	if l, ok := c.p.lines[path]; ok {
		return l
	}
	return fallback
}

func (c *checker) tierNames() []string {
	names := make([]string, 0, len(c.p.Tiers))
	for n := range c.p.Tiers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *checker) kindList() string { return strings.Join(orderKinds(c.p.kinds), ", ") }

// sortProblems orders problems by line; problems without a line, which
// concern the file as a whole, come first.
func sortProblems(problems []*FieldError) {
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
}
