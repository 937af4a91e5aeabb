package postgres

import (
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Homed = kind{}

// Homes is the cluster's data directory: a restore into it replaces the
// production cluster.
func (kind) Homes(a *policy.Asset) []string {
	c, err := ConfigOf(a)
	if err != nil {
		return nil
	}
	return []string{c.PGData}
}
