package app

import (
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

func lifeboatKind(s string) lifeboat.AssetKind { return lifeboat.AssetKind(s) }

// kindsWith names the registered kinds that have a capability, for the
// message that refuses one without it.
func (s *Service) kindsWith(has func(asset.Kind) bool) string {
	var names []string
	for _, k := range s.Kinds.Kinds() {
		if has(k) {
			names = append(names, string(k.Name()))
		}
	}
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}
