package sqlite

import (
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Homed = kind{}

// Homes is the database file: a restore onto it replaces production.
func (kind) Homes(a *policy.Asset) []string {
	c, err := configOf(a)
	if err != nil {
		return nil
	}
	return []string{c.Path}
}
