package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// KindDecoder reads the keys of an asset that belong to its kind: the
// policy package knows only the keys all assets share, and hands the rest
// to the kind.
type KindDecoder interface {
	// ConfigKeys are the keys the kind takes. A key no kind takes is
	// refused as unknown; a key of another kind is refused as such.
	ConfigKeys() []string
	// DecodeConfig reads and checks the kind's keys through s and returns
	// its typed configuration, which lands in Asset.Config. Problems are
	// recorded with s.Errorf, each naming its field and line.
	DecodeConfig(s *Section) any
}

// Kinds maps the name of every kind a policy may use to its decoder (nil
// for a kind without keys of its own). internal/app passes its registry's.
type Kinds map[lifeboat.AssetKind]KindDecoder

// Load reads the policy file at path, expands ${NAME} references from the
// process environment and validates the result; its assets may be of the
// given kinds. Relative paths (key_file, state_dir, and the kinds' that
// say so) are resolved against the directory holding the file.
func Load(path string, kinds Kinds) (*Policy, error) {
	data, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	return parse(data, path, baseDir(path), lookupEnv, kinds)
}

// Parse is Load for a policy held in memory. source names it in error
// messages, and relative paths are resolved against its directory (the
// working directory when source has none).
func Parse(data []byte, source string, kinds Kinds) (*Policy, error) {
	return parse(data, source, baseDir(source), lookupEnv, kinds)
}

// Section is the part of one asset's entry that belongs to its kind. Its
// readers expand ${NAME} references and record a value of the wrong shape
// as a problem, as the policy's own keys are read; the kind adds what is
// wrong with the values.
type Section struct {
	c    *converter
	path string // the asset's field path, "assets[3]"
	line int
	keys map[string]yaml.Node
}

// Path is the asset's field path, for messages.
func (s *Section) Path() string { return s.path }

// Has reports whether the key is written.
func (s *Section) Has(key string) bool { _, ok := s.keys[key]; return ok }

// node is the key's value, an alias followed; nil when the key is absent
// or null (written without a value, as yaml.v3 reads it into a field).
func (s *Section) node(key string) *yaml.Node {
	n, ok := s.keys[key]
	if !ok {
		return nil
	}
	return valueNode(&n)
}

func valueNode(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return nil
	}
	return n
}

// String is a scalar key's value with ${NAME} references expanded; "" when
// the key is absent or not a scalar (which is recorded as a problem).
func (s *Section) String(key string) string {
	n := s.node(key)
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		s.Errorf(key, "expected a single value, found %s", describeNode(n))
		return ""
	}
	return s.c.expand(s.path+"."+key, n.Value)
}

// Secret is String held as a Secret, so that it redacts itself.
func (s *Section) Secret(key string) Secret { return Secret(s.String(key)) }

// Strings is a list key's values, each expanded.
func (s *Section) Strings(key string) []string {
	n := s.node(key)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		s.Errorf(key, "expected a list, found %s", describeNode(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		switch v := valueNode(item); {
		case v == nil:
			out = append(out, "")
		case v.Kind != yaml.ScalarNode:
			s.ItemErrorf(key, i, "expected a single value, found %s", describeNode(v))
			out = append(out, "")
		default:
			out = append(out, s.c.expand(itemPath(s.path+"."+key, i), v.Value))
		}
	}
	return out
}

// Bool is a key written true or false; def when it is absent.
func (s *Section) Bool(key string, def bool) bool {
	v := s.String(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		s.Errorf(key, "%q is not true or false", v)
		return def
	}
	return b
}

// AbsPath is String for a key that names a file or directory by its
// absolute path, cleaned. A relative path is recorded as a problem and
// read as "".
func (s *Section) AbsPath(key string) string {
	v := s.String(key)
	if v == "" {
		return ""
	}
	v = filepath.Clean(v)
	if !filepath.IsAbs(v) {
		s.Errorf(key, "%s %q must be an absolute path", key, v)
		return ""
	}
	return v
}

// File is String for a key that names a file which may be given relative
// to the policy file's directory (as key_file may); the path returned is
// absolute and cleaned.
func (s *Section) File(key string) string {
	v := s.String(key)
	if v == "" {
		return ""
	}
	if !filepath.IsAbs(v) {
		v = filepath.Join(s.c.base, v)
	}
	return filepath.Clean(v)
}

// Errorf records a problem with key (or with the asset as a whole when key
// is ""), pinned to the line it was written on, else the asset's. A key
// whose value could not be read already has its problem: a second one
// ("is required" after "variable not set") is dropped.
func (s *Section) Errorf(key, format string, args ...any) {
	path := s.path
	if key != "" {
		path += "." + key
	}
	s.fail(path, format, args...)
}

// ItemErrorf is Errorf for item i of the list key.
func (s *Section) ItemErrorf(key string, i int, format string, args ...any) {
	s.fail(itemPath(s.path+"."+key, i), format, args...)
}

func (s *Section) fail(path, format string, args ...any) {
	if s.c.failed[path] {
		return
	}
	s.c.fail(path, s.line, fmt.Sprintf(format, args...))
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return describeTag(n.ShortTag())
}

// kindSection hands the keys of an asset beyond the shared ones to its
// kind. A key another kind takes is refused here, naming that kind; keys
// no kind takes were refused before (unknownKeys).
func (c *converter) kindSection(path string, a *assetYAML, asset *Asset) {
	dec, ok := c.kinds[asset.Kind]
	if !ok {
		return // refused as an unknown kind
	}
	var own []string
	if dec != nil {
		own = dec.ConfigKeys()
	}
	for _, key := range sortedKeys(a.Extra) {
		if slices.Contains(own, key) {
			continue
		}
		if owners := c.owners(key); len(owners) > 0 {
			c.fail(path+"."+key, asset.Line, fmt.Sprintf("%s is a key of %s assets, not of %s assets", key, andList(owners), asset.Kind))
		}
	}
	if dec != nil {
		asset.Config = dec.DecodeConfig(&Section{c: c, path: path, line: asset.Line, keys: a.Extra})
	}
}

// kindSections reads the kinds' keys of every asset but those skipped,
// for the problems in them, when the rest of the policy is not read.
func (c *converter) kindSections(raw *fileYAML, skip map[int]bool) {
	for i := range raw.Assets {
		if skip[i] {
			continue
		}
		path := itemPath("assets", i)
		c.kindSection(path, &raw.Assets[i], &Asset{Kind: lifeboat.AssetKind(raw.Assets[i].Kind), Line: c.idx.line(path, 0)})
	}
}

// owners are the kinds that take key, in the order kinds are listed.
func (c *converter) owners(key string) []string {
	var out []string
	for _, k := range orderKinds(c.kinds) {
		if dec := c.kinds[lifeboat.AssetKind(k)]; dec != nil && slices.Contains(dec.ConfigKeys(), key) {
			out = append(out, k)
		}
	}
	return out
}

// unknownKeys are the problems of asset keys that neither every asset nor
// any kind takes (typos, most likely), and the assets that have them,
// whose kind is not asked to read keys meant for something else. An asset
// of an unknown kind, or none, is refused for that; its keys are checked
// only against every kind's.
func (c *converter) unknownKeys(raw *fileYAML) ([]*FieldError, map[int]bool) {
	var out []*FieldError
	skip := map[int]bool{}
	shared := knownKeys("policy.assetYAML")
	for i := range raw.Assets {
		a := &raw.Assets[i]
		known := slices.Clone(shared)
		if dec, ok := c.kinds[lifeboat.AssetKind(a.Kind)]; ok {
			if dec != nil {
				known = append(known, dec.ConfigKeys()...)
			}
		} else {
			for _, dec := range c.kinds {
				if dec != nil {
					known = append(known, dec.ConfigKeys()...)
				}
			}
		}
		path := itemPath("assets", i)
		for _, key := range sortedKeys(a.Extra) {
			if len(c.owners(key)) > 0 {
				continue // a key of some kind; kindSection says if not of this one
			}
			skip[i] = true
			n := a.Extra[key]
			line := n.Line
			if e, ok := c.idx.byPath[childPath(path, key)]; ok && e.key != nil {
				line = e.key.Line
			}
			out = append(out, &FieldError{Source: c.source, Line: line, Msg: c.unknownKeyMsg(path, key, known)})
		}
	}
	return out, skip
}

// unknownKeyMsg says, as yaml.v3's unknown-field errors are rewritten,
// that key is not one of known in the mapping at path.
func (c *converter) unknownKeyMsg(path, key string, known []string) string {
	msg := fmt.Sprintf("unknown key %q %s", key, c.idx.describe(path))
	if s := closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(known) > 0 {
		msg += " (known keys: " + strings.Join(known, ", ") + ")"
	}
	return msg
}

// orderKinds are the names of kinds as messages list them: the
// vocabulary's kinds first, in its order, then the others by name.
func orderKinds(kinds Kinds) []string {
	var out, rest []string
	for _, k := range []lifeboat.AssetKind{lifeboat.KindPostgres, lifeboat.KindPGDump, lifeboat.KindSQLite, lifeboat.KindFiles, lifeboat.KindGit} {
		if _, ok := kinds[k]; ok {
			out = append(out, string(k))
		}
	}
	for k := range kinds {
		if !slices.Contains(out, string(k)) {
			rest = append(rest, string(k))
		}
	}
	sort.Strings(rest)
	return append(out, rest...)
}

// andList joins names as a sentence does: "a", "a and b", "a, b and c".
func andList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func sortedKeys(m map[string]yaml.Node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
