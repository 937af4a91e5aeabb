package policy

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The *YAML types mirror the file. Every scalar is a string so that ${NAME}
// expansion runs before any value is interpreted; conversion to durations,
// sizes and secrets happens afterwards, in convert.go.
type fileYAML struct {
	Repositories  []repositoryYAML    `yaml:"repositories"`
	Tiers         map[string]tierYAML `yaml:"tiers"`
	Assets        []assetYAML         `yaml:"assets"`
	StateDir      string              `yaml:"state_dir"`
	User          string              `yaml:"user"`
	Alerts        []alertYAML         `yaml:"alerts"`
	Check         *checkYAML          `yaml:"check"`
	Metrics       *metricsYAML        `yaml:"metrics"`
	Approvals     *approvalsYAML      `yaml:"approvals"`
	Groups        map[string][]string `yaml:"groups"`
	PlatformDrill *platformDrillYAML  `yaml:"platform_drill"`
	Audit         *auditYAML          `yaml:"audit"`
	Web           *webYAML            `yaml:"web"`
	Runbook       *runbookYAML        `yaml:"runbook"`
	Report        *reportFileYAML     `yaml:"report"`
	Catalog       string              `yaml:"catalog"`
	Host          string              `yaml:"host"`
	DrillHost     string              `yaml:"drill_host"`
}

type alertYAML struct {
	Kind       string   `yaml:"kind"`
	Name       string   `yaml:"name"`
	WebhookURL string   `yaml:"webhook_url"`
	RoutingKey string   `yaml:"routing_key"`
	URL        string   `yaml:"url"`
	Secret     string   `yaml:"secret"`
	SMTP       string   `yaml:"smtp"`
	TLS        string   `yaml:"tls"`
	Username   string   `yaml:"username"`
	Password   string   `yaml:"password"`
	From       string   `yaml:"from"`
	To         []string `yaml:"to"`
	Repeat     string   `yaml:"repeat"`
}

type checkYAML struct {
	Interval string `yaml:"interval"`
	Grace    string `yaml:"grace"`
}

type metricsYAML struct {
	Listen string `yaml:"listen"`
}

type drillYAML struct {
	Schedule   string           `yaml:"schedule"`
	Point      string           `yaml:"point"`
	Repository string           `yaml:"repository"`
	Checks     []drillCheckYAML `yaml:"checks"`
}

type drillCheckYAML struct {
	Name     string `yaml:"name"`
	SQL      string `yaml:"sql"`
	Database string `yaml:"database"`
	Expect   string `yaml:"expect"`
}

type repositoryYAML struct {
	Name         string          `yaml:"name"`
	URL          string          `yaml:"url"`
	KeyFile      string          `yaml:"key_file"`
	Passphrase   string          `yaml:"passphrase"`
	IdentityFile string          `yaml:"identity_file"`
	IdentityPass string          `yaml:"identity_passphrase"`
	IdentityKey  string          `yaml:"identity_key_file"`
	AccessKey    string          `yaml:"access_key"`
	SecretKey    string          `yaml:"secret_key"`
	ObjectLock   *objectLockYAML `yaml:"object_lock"`
	MinRetention string          `yaml:"min_retention"`
	Role         string          `yaml:"role"`
}

type objectLockYAML struct {
	Mode string `yaml:"mode"`
}

type retentionYAML struct {
	PITRWindow string `yaml:"pitr_window"`
	KeepWithin string `yaml:"keep_within"`
	Daily      string `yaml:"daily"`
	Weekly     string `yaml:"weekly"`
	Monthly    string `yaml:"monthly"`
	Yearly     string `yaml:"yearly"`
	TimeZone   string `yaml:"time_zone"`
}

type tierYAML struct {
	RPO string `yaml:"rpo"`
	RTO string `yaml:"rto"`
}

type assetYAML struct {
	Name         string         `yaml:"name"`
	Kind         string         `yaml:"kind"`
	Tier         string         `yaml:"tier"`
	Repositories []string       `yaml:"repositories"`
	Retention    *retentionYAML `yaml:"retention"`
	Schedule     string         `yaml:"schedule"`
	Hooks        *hooksYAML     `yaml:"hooks"`
	Drill        *drillYAML     `yaml:"drill"`
	Production   string         `yaml:"production"`
	// Extra holds the keys of the asset's kind, which the kind reads
	// (KindDecoder); a key no kind takes is unknown.
	Extra map[string]yaml.Node `yaml:",inline"`
}

type hooksYAML struct {
	Pre     string `yaml:"pre"`
	Post    string `yaml:"post"`
	Timeout string `yaml:"timeout"`
}

// knownKeys lists the keys of the *YAML type yaml.v3 calls goType.
func knownKeys(goType string) []string {
	for _, v := range []any{fileYAML{}, repositoryYAML{}, tierYAML{}, assetYAML{}, objectLockYAML{}, retentionYAML{}, hooksYAML{},
		alertYAML{}, checkYAML{}, metricsYAML{}, drillYAML{}, drillCheckYAML{}, approvalsYAML{}, auditYAML{}, webYAML{}, oidcYAML{}, platformDrillYAML{}} {
		t := reflect.TypeOf(v)
		if t.String() != goType {
			continue
		}
		keys := make([]string, 0, t.NumField())
		for i := range t.NumField() {
			if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); tag != "" {
				keys = append(keys, tag)
			}
		}
		return keys
	}
	return nil
}

// nodeIndex maps field paths ("assets[0].repositories[1]", "tiers.gold.rpo")
// to the syntax nodes they were read from. yaml.v3 reports decode errors by
// line only and plain structs keep no lines, so this is how errors get a
// field path and fields get a line.
type nodeIndex struct {
	byPath  map[string]*nodeEntry
	entries []*nodeEntry // document order
}

type nodeEntry struct {
	path, parent string
	key          *yaml.Node // nil for sequence items and the root
	value        *yaml.Node
}

func newNodeIndex(root *yaml.Node) *nodeIndex {
	x := &nodeIndex{byPath: map[string]*nodeEntry{}}
	x.walk(&nodeEntry{value: root})
	return x
}

// walk records e and its descendants. Aliases are not followed: a document
// can make them expand exponentially, and the lines inside them belong to
// the anchor anyway.
func (x *nodeIndex) walk(e *nodeEntry) {
	if _, dup := x.byPath[e.path]; !dup {
		x.byPath[e.path] = e
	}
	x.entries = append(x.entries, e)
	n := e.value
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			name := "?"
			if k.Kind == yaml.ScalarNode {
				name = k.Value
			}
			x.walk(&nodeEntry{path: childPath(e.path, name), parent: e.path, key: k, value: n.Content[i+1]})
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			x.walk(&nodeEntry{path: itemPath(e.path, i), parent: e.path, value: item})
		}
	}
}

// line returns the line path was written on, or fallback when the path is
// not in the file. A keyed field reports the key's line: that is where a
// reader looks, and a missing value has no line of its own.
func (x *nodeIndex) line(path string, fallback int) int {
	e, ok := x.byPath[path]
	if !ok {
		return fallback
	}
	return e.line()
}

func (e *nodeEntry) line() int {
	if e.key != nil {
		return e.key.Line
	}
	return e.value.Line
}

// has reports whether path was written in the file, even with an empty value.
func (x *nodeIndex) has(path string) bool {
	_, ok := x.byPath[path]
	return ok
}

// lines returns every path's line, for Validate.
func (x *nodeIndex) lines() map[string]int {
	m := make(map[string]int, len(x.byPath))
	for p, e := range x.byPath {
		m[p] = e.line()
	}
	return m
}

var simpleKey = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func childPath(parent, key string) string {
	if !simpleKey.MatchString(key) {
		return parent + "[" + strconv.Quote(key) + "]"
	}
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func itemPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// describe names the mapping at path the way an operator thinks of it:
// `asset "ledger"` rather than assets[3].
func (x *nodeIndex) describe(path string) string {
	if path == "" {
		return "at the top level"
	}
	e, ok := x.byPath[path]
	if !ok {
		return "in " + path
	}
	kind := ""
	switch e.parent {
	case "repositories":
		kind = "repository"
	case "assets":
		kind = "asset"
	case "alerts":
		kind = "alert"
	case "tiers":
		return fmt.Sprintf("in tier %q", e.key.Value)
	}
	if kind == "" || e.key != nil {
		return "in " + path
	}
	if n, ok := x.byPath[childPath(path, "name")]; ok && n.value.Kind == yaml.ScalarNode && n.value.Value != "" {
		return fmt.Sprintf("in %s %q", kind, n.value.Value)
	}
	return fmt.Sprintf("in %s (%s)", kind, path)
}

// The messages yaml.v3 puts in a TypeError. They carry a line and Go type
// names, and the "cannot unmarshal" one quotes the start of the value,
// which could be a secret, so all of them are rewritten.
var (
	reUnknownKey = regexp.MustCompile(`(?s)^line (\d+): field (.*) not found in type (\S+)$`)
	reKeyRepeat  = regexp.MustCompile(`(?s)^line (\d+): field (.*) already set in type (\S+)$`)
	reDupKey     = regexp.MustCompile(`(?s)^line (\d+): mapping key (".*") already defined at line (\d+)$`)
	reWrongType  = regexp.MustCompile(`(?s)^line (\d+): cannot unmarshal (\S+).* into (\S+)$`)
	reLine       = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
)

func (x *nodeIndex) rewriteTypeErrors(source string, te *yaml.TypeError) []*FieldError {
	out := make([]*FieldError, 0, len(te.Errors))
	for _, msg := range te.Errors {
		out = append(out, x.rewriteTypeError(source, msg))
	}
	return out
}

func (x *nodeIndex) rewriteTypeError(source, msg string) *FieldError {
	if m := reUnknownKey.FindStringSubmatch(msg); m != nil {
		line, key := atoi(m[1]), m[2]
		fe := &FieldError{Source: source, Line: line}
		where := "in the policy"
		if e := x.findKey(line, key); e != nil {
			where = x.describe(e.parent)
		}
		fe.Msg = fmt.Sprintf("unknown key %q %s", key, where)
		known := knownKeys(m[3])
		if s := closest(key, known); s != "" {
			fe.Msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if len(known) > 0 {
			fe.Msg += " (known keys: " + strings.Join(known, ", ") + ")"
		}
		return fe
	}
	if m := reKeyRepeat.FindStringSubmatch(msg); m != nil {
		line, key := atoi(m[1]), m[2]
		where := "in the policy"
		if e := x.findKey(line, key); e != nil {
			where = x.describe(e.parent)
		}
		return &FieldError{Source: source, Line: line, Msg: fmt.Sprintf("key %q is set more than once %s", key, where)}
	}
	if m := reDupKey.FindStringSubmatch(msg); m != nil {
		line := atoi(m[1])
		key, err := strconv.Unquote(m[2])
		if err != nil {
			key = m[2]
		}
		where := "in the policy"
		if e := x.findKey(line, key); e != nil {
			where = x.describe(e.parent)
		}
		return &FieldError{Source: source, Line: line, Msg: fmt.Sprintf("duplicate key %q %s (first set on line %s)", key, where, m[3])}
	}
	if m := reWrongType.FindStringSubmatch(msg); m != nil {
		line, tag := atoi(m[1]), m[2]
		fe := &FieldError{Source: source, Line: line}
		if e := x.findValue(line, tag); e != nil {
			fe.Path = e.path
		}
		fe.Msg = fmt.Sprintf("expected %s, found %s", expectedShape(m[3]), describeTag(tag))
		if m[3] == reflect.TypeOf(fileYAML{}).String() {
			fe.Path = ""
			fe.Msg = fmt.Sprintf("the policy must be a mapping with the keys %s; found %s", strings.Join(knownKeys(m[3]), ", "), describeTag(tag))
		}
		return fe
	}
	if m := reLine.FindStringSubmatch(msg); m != nil {
		return &FieldError{Source: source, Line: atoi(m[1]), Msg: m[2]}
	}
	return &FieldError{Source: source, Msg: msg}
}

// findKey returns the entry whose key is key on line.
func (x *nodeIndex) findKey(line int, key string) *nodeEntry {
	for _, e := range x.entries {
		if e.key != nil && e.key.Line == line && e.key.Value == key {
			return e
		}
	}
	return nil
}

// findValue returns the first entry on line whose value has tag, or failing
// that the first entry on line.
func (x *nodeIndex) findValue(line int, tag string) *nodeEntry {
	var first *nodeEntry
	for _, e := range x.entries {
		if e.value.Line != line {
			continue
		}
		if e.value.ShortTag() == tag {
			return e
		}
		if first == nil {
			first = e
		}
	}
	return first
}

func expectedShape(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasSuffix(goType, "YAML"):
		return "a mapping of keys to values"
	default:
		return "a single value"
	}
}

func describeTag(tag string) string {
	switch tag {
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "an empty value"
	default:
		return "a value tagged " + tag
	}
}

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: ...") into one
// that names the file.
func syntaxError(source string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := reLine.FindStringSubmatch(msg); m != nil {
		line, msg = atoi(m[1]), m[2]
	}
	// yaml.v3 numbers lines from 1 for its scanner's errors but from 0 for
	// its parser's, and leaves a zero line out of the message.
	if slices.Contains(parserProblems(), msg) {
		line++
	}
	return &FieldError{Source: source, Line: line, Msg: "invalid YAML: " + msg}
}

// parserProblems are the messages of yaml.v3's parser, as opposed to its
// scanner (parserc.go in yaml.v3).
func parserProblems() []string {
	return []string{
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"did not find expected '-' indicator",
		"did not find expected <document start>",
		"did not find expected <stream-start>",
		"did not find expected key",
		"did not find expected node content",
		"found duplicate %TAG directive",
		"found duplicate %YAML directive",
		"found incompatible YAML document",
		"found undefined tag handle",
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}

// closest returns the candidate within two edits of s, to turn a typo into
// a "did you mean", or "" when none is that close.
func closest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // long keys are never typos of ours; spare the quadratic work
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// joinProblems sorts problems by line, so they read top to bottom like the
// file, and joins them.
func joinProblems(problems []*FieldError) error {
	sortProblems(problems)
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = p
	}
	return errors.Join(errs...)
}
