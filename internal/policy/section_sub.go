package policy

import (
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Sub is the mapping under key as a Section of its own (postgres's
// `wal: {stream: true}`), nil when the key is absent. A key of the mapping
// not in allowed is recorded as a problem, as unknown keys are elsewhere.
func (s *Section) Sub(key string, allowed ...string) *Section {
	n := s.node(key)
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		s.Errorf(key, "expected a mapping, found %s", describeNode(n))
		return nil
	}
	sub := &Section{c: s.c, path: s.path + "." + key, line: n.Line, keys: map[string]yaml.Node{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if !slices.Contains(allowed, k) {
			sub.Errorf(k, "unknown key %q (known keys: %s)", k, strings.Join(allowed, ", "))
			continue
		}
		sub.keys[k] = *n.Content[i+1]
	}
	return sub
}
