package policy

import (
	"fmt"
	"slices"
	"sort"

	"gopkg.in/yaml.v3"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// KindDecoder reads the keys of an asset that belong to its kind, for the
// kinds that own their section of the policy (the bucket kind, and every
// kind added after it): the policy package knows only the keys all assets
// share, and hands the rest to the kind.
type KindDecoder interface {
	// ConfigKeys are the keys the kind takes; any other key in the
	// asset's entry is refused as unknown.
	ConfigKeys() []string
	// DecodeConfig reads the kind's keys through s and returns its typed
	// configuration, which lands in Asset.Config. Problems are recorded
	// with s.Errorf, each naming its field and line.
	DecodeConfig(s *Section) any
}

// Kinds maps the names of the kinds a policy may use beside the built-in
// ones to their decoders (nil for a kind without keys of its own).
type Kinds map[lifeboat.AssetKind]KindDecoder

// LoadKinds is Load for a policy whose assets may be of the given kinds
// beside the built-in ones.
func LoadKinds(path string, kinds Kinds) (*Policy, error) {
	data, err := readPolicy(path)
	if err != nil {
		return nil, err
	}
	return parseKinds(data, path, baseDir(path), lookupEnv, kinds)
}

// ParseKinds is Parse for a policy whose assets may be of the given kinds.
func ParseKinds(data []byte, source string, kinds Kinds) (*Policy, error) {
	return parseKinds(data, source, baseDir(source), lookupEnv, kinds)
}

// Section is the part of one asset's entry that belongs to its kind.
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

// String is a scalar key's value with ${NAME} references expanded; "" when
// the key is absent or not a scalar (which is recorded as a problem).
func (s *Section) String(key string) string {
	n, ok := s.keys[key]
	if !ok {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		s.Errorf(key, "expected a single value, found %s", describeNode(&n))
		return ""
	}
	return s.c.expand(s.path+"."+key, n.Value)
}

// Secret is String held as a Secret, so that it redacts itself.
func (s *Section) Secret(key string) Secret { return Secret(s.String(key)) }

// Strings is a list key's values, each expanded; a single value is read
// as a list of one.
func (s *Section) Strings(key string) []string {
	n, ok := s.keys[key]
	if !ok {
		return nil
	}
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{s.c.expand(s.path+"."+key, n.Value)}
	case yaml.SequenceNode:
		var out []string
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				s.Errorf(key, "item %d: expected a single value, found %s", i, describeNode(item))
				continue
			}
			out = append(out, s.c.expand(itemPath(s.path+"."+key, i), item.Value))
		}
		return out
	}
	s.Errorf(key, "expected a list of values, found %s", describeNode(&n))
	return nil
}

// Errorf records a problem with key (or with the asset as a whole when key
// is ""), pinned to the line it was written on.
func (s *Section) Errorf(key, format string, args ...any) {
	path := s.path
	if key != "" {
		path += "." + key
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
	return describeTag(n.Tag)
}

// kindSection decodes the keys of an asset whose kind decodes its own
// section, refusing the keys the kind does not take.
func (c *converter) kindSection(path string, a *assetYAML, asset *Asset) {
	dec, ok := c.kinds[asset.Kind]
	if !ok {
		return
	}
	var known []string
	if dec != nil {
		known = dec.ConfigKeys()
	}
	for _, key := range sortedKeys(a.Extra) {
		if !slices.Contains(known, key) {
			c.fail(path+"."+key, asset.Line, c.unknownKeyMsg(path, key, append(knownKeys("policy.assetYAML"), known...)))
		}
	}
	if dec != nil {
		asset.Config = dec.DecodeConfig(&Section{c: c, path: path, line: asset.Line, keys: a.Extra})
	}
}

// extraKeys are the problems of keys no kind took: in an asset of a kind
// without a decoder, every key beyond the shared and built-in ones.
func extraKeyProblems(raw *fileYAML, idx *nodeIndex, source string, kinds Kinds) []*FieldError {
	var out []*FieldError
	for i := range raw.Assets {
		a := &raw.Assets[i]
		if _, ok := kinds[lifeboat.AssetKind(a.Kind)]; ok {
			continue
		}
		path := itemPath("assets", i)
		for _, key := range sortedKeys(a.Extra) {
			n := a.Extra[key]
			line := n.Line
			if e, ok := idx.byPath[childPath(path, key)]; ok && e.key != nil {
				line = e.key.Line
			}
			c := &converter{idx: idx}
			out = append(out, &FieldError{Source: source, Line: line, Msg: c.unknownKeyMsg(path, key, knownKeys("policy.assetYAML"))})
		}
	}
	return out
}

// unknownKeyMsg says, as yaml.v3's unknown-field errors are rewritten,
// that key is not one of known in the mapping at path.
func (c *converter) unknownKeyMsg(path, key string, known []string) string {
	msg := fmt.Sprintf("unknown key %q %s", key, c.idx.describe(path))
	if s := closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	} else if len(known) > 0 {
		msg += " (known keys: " + joinKeys(known) + ")"
	}
	return msg
}

func joinKeys(keys []string) string {
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += k
	}
	return out
}

func sortedKeys(m map[string]yaml.Node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
