package files

import (
	"slices"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Homed = kind{}

// Homes are the paths backed up: a restore onto them replaces production.
func (kind) Homes(a *policy.Asset) []string {
	c, err := configOf(a)
	if err != nil {
		return nil
	}
	return slices.Clone(c.Paths)
}
