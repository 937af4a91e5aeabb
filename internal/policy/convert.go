package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// converter turns the decoded file into a Policy: it expands ${NAME}
// references and interprets durations, sizes and paths, collecting a
// problem for every value it cannot use.
type converter struct {
	source    string
	base      string // directory relative key_file paths are resolved against
	lookupEnv func(string) (string, bool)
	idx       *nodeIndex
	problems  []*FieldError
	failed    map[string]bool // paths whose value could not be converted
	kinds     Kinds
	// envRefs are the variables ${NAME} refers to outside the alerts.
	envRefs map[string]bool
}

func (c *converter) convert(raw *fileYAML) *Policy {
	if c.envRefs == nil {
		c.envRefs = map[string]bool{}
	}
	p := &Policy{Source: c.source, lines: c.idx.lines(), StateDir: DefaultStateDir, StateDirDefault: true, kinds: c.kinds, envRefs: c.envRefs}
	if p.kinds == nil {
		p.kinds = Kinds{} // read knowing no kind, not built in code: every kind is unknown
	}
	if d := c.nonEmpty("state_dir", raw.StateDir); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(c.base, d)
		}
		p.StateDir, p.StateDirDefault = filepath.Clean(d), false
	}
	if u := c.nonEmpty("user", raw.User); u != "" {
		if strings.ContainsAny(u, " \t/:") {
			c.fail("user", 0, fmt.Sprintf("%q is not a user name", u))
		}
		p.User = u
	}
	for i, r := range raw.Repositories {
		p.Repositories = append(p.Repositories, c.repository(itemPath("repositories", i), &r))
	}
	if raw.Tiers != nil {
		p.Tiers = make(map[string]Tier, len(raw.Tiers))
		for name, t := range raw.Tiers {
			p.Tiers[name] = c.tier(childPath("tiers", name), &t)
		}
	}
	for i, a := range raw.Assets {
		p.Assets = append(p.Assets, c.asset(itemPath("assets", i), &a))
	}
	for i, a := range raw.Alerts {
		p.Alerts = append(p.Alerts, c.alert(itemPath("alerts", i), &a))
	}
	p.Check = Check{Interval: Duration(DefaultCheckInterval), Grace: Duration(DefaultCheckGrace)}
	if ch := raw.Check; ch != nil {
		if d := c.duration("check.interval", ch.Interval); d != 0 || c.idx.has("check.interval") {
			p.Check.Interval = d
		}
		if d := c.duration("check.grace", ch.Grace); d != 0 || c.idx.has("check.grace") {
			p.Check.Grace = d
		}
	}
	if m := raw.Metrics; m != nil {
		p.MetricsListen = c.nonEmpty("metrics.listen", m.Listen)
	}
	p.Approvals = c.approvals(raw.Approvals)
	p.Audit = c.audit(raw.Audit)
	p.Web = c.web(raw.Web)
	p.Groups = c.groups(raw.Groups)
	p.PlatformDrill = c.platformDrill(raw.PlatformDrill)
	p.Runbook = c.runbook(raw.Runbook)
	p.Report = c.reportFile(raw.Report)
	p.Fleet = c.fleet(raw.Catalog, raw.Host)
	p.DrillHost = c.drillHost(raw.DrillHost)
	return p
}

// envRef finds the names of ${NAME} references (and, harmlessly, of an
// escaped $${NAME}, which only adds a variable to those passed on).
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// errUnsetEnv matches expandEnv's messages for unset variables.
var errUnsetEnv = regexp.MustCompile(`^environment variables? .* (is|are) not set$`)

func (c *converter) alert(path string, a *alertYAML) (al Alert) {
	al.Line = c.idx.line(path, 0)
	// An alert's secrets are often set only in the daemon's environment,
	// not in PostgreSQL's, where wal-push runs: an unset variable here
	// must not stop archiving. It is kept with the alert, and whatever
	// sends alerts refuses to start on it.
	before := len(c.problems)
	defer func() {
		kept := c.problems[:before]
		for _, pr := range c.problems[before:] {
			if errUnsetEnv.MatchString(pr.Msg) {
				al.Unresolved = append(al.Unresolved, pr.Error())
				delete(c.failed, pr.Path)
			} else {
				kept = append(kept, pr)
			}
		}
		c.problems = kept
	}()
	al.Kind = AlertKind(strings.ToLower(c.expand(path+".kind", a.Kind)))
	al.Name = c.expand(path+".name", a.Name)
	if al.Name == "" {
		al.Name = string(al.Kind)
	}
	al.URL = c.nonEmpty(path+".url", a.URL)
	if u := c.nonEmpty(path+".webhook_url", a.WebhookURL); u != "" {
		al.URL = u
	}
	if al.Kind == AlertPagerDuty && al.URL == "" {
		al.URL = DefaultPagerDutyURL
	}
	al.RoutingKey = Secret(c.nonEmpty(path+".routing_key", a.RoutingKey))
	al.Secret = Secret(c.nonEmpty(path+".secret", a.Secret))
	al.SMTP = c.nonEmpty(path+".smtp", a.SMTP)
	al.TLS = strings.ToLower(c.expand(path+".tls", a.TLS))
	if al.TLS == "" && al.Kind == AlertEmail {
		al.TLS = "starttls"
	}
	al.Username = c.expand(path+".username", a.Username)
	al.Password = Secret(c.nonEmpty(path+".password", a.Password))
	al.From = c.expand(path+".from", a.From)
	for j, to := range a.To {
		al.To = append(al.To, c.expand(itemPath(path+".to", j), to))
	}
	al.Repeat = c.duration(path+".repeat", a.Repeat)
	if al.Repeat == 0 && !c.idx.has(path+".repeat") {
		al.Repeat = Duration(DefaultAlertRepeat)
	}
	return al
}

func (c *converter) drill(path string, d *drillYAML) *Drill {
	dr := &Drill{Line: c.idx.line(path, 0)}
	dr.Schedule = c.expand(path+".schedule", d.Schedule)
	dr.Point = strings.ToLower(c.expand(path+".point", d.Point))
	if dr.Point == "" {
		dr.Point = DrillLatest
	}
	dr.Repository = c.expand(path+".repository", d.Repository)
	for j, ck := range d.Checks {
		cp := itemPath(path+".checks", j)
		dc := ValidationQuery{Line: c.idx.line(cp, dr.Line)}
		dc.Name = c.expand(cp+".name", ck.Name)
		dc.SQL = c.expand(cp+".sql", ck.SQL)
		dc.Database = c.expand(cp+".database", ck.Database)
		e, err := ParseExpectation(c.expand(cp+".expect", ck.Expect))
		if err != nil {
			c.fail(cp+".expect", dc.Line, err.Error())
		}
		dc.Expect = e
		dr.Checks = append(dr.Checks, dc)
	}
	return dr
}

// ParseExpectation reads a check's expect key: "" or "true", ">= N",
// "= recorded" or "= VALUE".
func ParseExpectation(s string) (Expectation, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" || strings.EqualFold(s, "true"):
		return Expectation{Kind: ExpectTrue}, nil
	case strings.HasPrefix(s, ">="):
		n, err := strconv.ParseInt(strings.TrimSpace(s[2:]), 10, 64)
		if err != nil {
			return Expectation{}, fmt.Errorf("expect %q: write \">= N\" with a whole number N, e.g. \">= 1000\"", s)
		}
		return Expectation{Kind: ExpectAtLeast, Min: n}, nil
	case strings.HasPrefix(s, "="):
		v := strings.TrimSpace(s[1:])
		if v == "recorded" {
			return Expectation{Kind: ExpectRecorded}, nil
		}
		return Expectation{Kind: ExpectEqual, Value: v}, nil
	}
	return Expectation{}, fmt.Errorf("expect %q: write true (the query returns true), \">= N\" (a count of at least N), \"= VALUE\" or \"= recorded\" (the value recorded at backup time)", s)
}

func (c *converter) repository(path string, r *repositoryYAML) Repository {
	repo := Repository{Line: c.idx.line(path, 0)}
	repo.Name = c.expand(path+".name", r.Name)
	repo.URL = c.expand(path+".url", r.URL)
	if kf := c.nonEmpty(path+".key_file", r.KeyFile); kf != "" {
		if !filepath.IsAbs(kf) {
			kf = filepath.Join(c.base, kf)
		}
		repo.KeyFile = filepath.Clean(kf)
	}
	repo.Passphrase = Secret(c.nonEmpty(path+".passphrase", r.Passphrase))
	if idf := c.nonEmpty(path+".identity_file", r.IdentityFile); idf != "" {
		if !filepath.IsAbs(idf) {
			idf = filepath.Join(c.base, idf)
		}
		repo.IdentityFile = filepath.Clean(idf)
	}
	repo.IdentityPassphrase = Secret(c.nonEmpty(path+".identity_passphrase", r.IdentityPass))
	if ikf := c.nonEmpty(path+".identity_key_file", r.IdentityKey); ikf != "" {
		if !filepath.IsAbs(ikf) {
			ikf = filepath.Join(c.base, ikf)
		}
		repo.IdentityKeyFile = filepath.Clean(ikf)
	}
	repo.AccessKey = Secret(c.nonEmpty(path+".access_key", r.AccessKey))
	repo.SecretKey = Secret(c.nonEmpty(path+".secret_key", r.SecretKey))
	if r.ObjectLock != nil {
		repo.ObjectLock = strings.ToLower(c.expand(path+".object_lock.mode", r.ObjectLock.Mode))
	}
	repo.MinRetention = c.duration(path+".min_retention", r.MinRetention)
	repo.Role = c.expand(path+".role", r.Role)
	return repo
}

func (c *converter) tier(path string, t *tierYAML) Tier {
	return Tier{RPO: c.duration(path+".rpo", t.RPO), RTO: c.duration(path+".rto", t.RTO)}
}

func (c *converter) asset(path string, a *assetYAML) Asset {
	asset := Asset{Line: c.idx.line(path, 0)}
	asset.Name = c.expand(path+".name", a.Name)
	asset.Kind = lifeboat.AssetKind(c.expand(path+".kind", a.Kind))
	asset.Tier = c.expand(path+".tier", a.Tier)
	for j, name := range a.Repositories {
		asset.Repositories = append(asset.Repositories, c.expand(itemPath(path+".repositories", j), name))
	}
	asset.Schedule = c.expand(path+".schedule", a.Schedule)
	asset.Production = c.boolean(path+".production", a.Production)
	if a.Drill != nil {
		asset.Drill = c.drill(path+".drill", a.Drill)
	}
	if h := a.Hooks; h != nil {
		asset.Hooks = Hooks{Pre: c.expand(path+".hooks.pre", h.Pre), Post: c.expand(path+".hooks.post", h.Post),
			Timeout: c.duration(path+".hooks.timeout", h.Timeout)}
	}
	if r := a.Retention; r != nil {
		rp := path + ".retention"
		asset.Retention = Retention{
			PITRWindow: c.duration(rp+".pitr_window", r.PITRWindow),
			KeepWithin: c.duration(rp+".keep_within", r.KeepWithin),
			Daily:      c.count(rp+".daily", r.Daily),
			Weekly:     c.count(rp+".weekly", r.Weekly),
			Monthly:    c.count(rp+".monthly", r.Monthly),
			Yearly:     c.count(rp+".yearly", r.Yearly),
			TimeZone:   c.expand(rp+".time_zone", r.TimeZone),
		}
	}
	c.kindSection(path, a, &asset)
	return asset
}

// expand returns raw with environment references expanded, or "" after
// recording a problem.
func (c *converter) expand(path, raw string) string {
	if c.envRefs != nil && !strings.HasPrefix(path, "alerts") {
		for _, m := range envRef.FindAllStringSubmatch(raw, -1) {
			c.envRefs[m[1]] = true
		}
	}
	s, err := expandEnv(raw, c.lookupEnv)
	if err != nil {
		c.fail(path, 0, err.Error())
		return ""
	}
	return s
}

// nonEmpty is expand for the fields that choose how a repository is
// unlocked: written but empty, typically through a variable set to "", is
// a mistake worth naming rather than a field left out.
func (c *converter) nonEmpty(path, raw string) string {
	s := c.expand(path, raw)
	if s == "" && !c.failed[path] && c.idx.has(path) {
		key := path[strings.LastIndexByte(path, '.')+1:]
		msg := key + " is empty"
		if strings.Contains(raw, "${") {
			msg += " after expanding environment variables"
		}
		c.fail(path, 0, msg)
	}
	return s
}

func (c *converter) duration(path, raw string) Duration {
	s := c.expand(path, raw)
	if s == "" {
		return 0
	}
	d, err := ParseDuration(s)
	if err != nil {
		c.fail(path, 0, err.Error())
		return 0
	}
	return Duration(d)
}

// count reads a GFS count: a whole number from 0 to 10000.
func (c *converter) count(path, raw string) int {
	s := c.expand(path, raw)
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 10000 {
		c.fail(path, 0, fmt.Sprintf("%q is not a count: write a whole number from 0 to 10000, e.g. 30", s))
		return 0
	}
	return n
}

func (c *converter) fail(path string, fallback int, msg string) {
	c.failed[path] = true
	c.problems = append(c.problems, &FieldError{Source: c.source, Line: c.idx.line(path, fallback), Path: path, Msg: msg})
}

// covers reports whether a validation problem at path follows from a value
// that already failed to convert, so the operator is not told twice. Most
// such problems sit on the failed field itself ("tier: variable not set",
// then "unknown tier"); the one exception is a repository whose key_file or
// passphrase failed, which Validate would call unlocked by neither.
func (c *converter) covers(path string) bool {
	if c.failed[path] || c.failed[path+".key_file"] || c.failed[path+".passphrase"] {
		return true
	}
	// "retention names no rule" follows from rules that failed to convert.
	if strings.HasSuffix(path, ".retention") {
		for p := range c.failed {
			if strings.HasPrefix(p, path+".") {
				return true
			}
		}
	}
	return false
}

// expandEnv replaces each ${NAME} in s with the value of the environment
// variable NAME and each $$ with a single $. Any other use of $ is an
// error rather than a literal, so that $HOME or ${X:-y} cannot silently
// pass through unexpanded. Errors name variables but never quote s, which
// may be a secret.
func expandEnv(s string, lookupEnv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	var unset []string
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		pos := i + 1 // 1-based position of the $, for the messages
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "$"):
			b.WriteByte('$')
			i += 2
			continue
		case !strings.HasPrefix(rest, "{"):
			return "", fmt.Errorf(`"$" at character %d must be written "$$" for a literal "$", or ${NAME} to insert an environment variable`, pos)
		}
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			return "", fmt.Errorf(`"${" at character %d has no closing "}"`, pos)
		}
		name := rest[1:end]
		if !validEnvName(name) {
			return "", fmt.Errorf(`"${...}" at character %d must hold only a variable name (letters, digits and '_', not starting with a digit); ${NAME} is the only expansion supported`, pos)
		}
		v, ok := lookupEnv(name)
		if !ok {
			unset = append(unset, name)
		}
		b.WriteString(v)
		i += 1 + end + 1
	}
	switch len(unset) {
	case 0:
		return b.String(), nil
	case 1:
		return "", fmt.Errorf("environment variable %s is not set", unset[0])
	default:
		sort.Strings(unset)
		return "", fmt.Errorf("environment variables %s are not set", strings.Join(unset, ", "))
	}
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
