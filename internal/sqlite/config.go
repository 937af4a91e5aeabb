package sqlite

import (
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Config is a sqlite asset's own part of the policy.
type Config struct {
	// Path is the absolute path of the database file.
	Path string
}

var _ asset.Configurer = kind{}

// ConfigKeys are the policy keys of a sqlite asset beyond the shared ones.
func (kind) ConfigKeys() []string { return []string{"path"} }

// DecodeConfig reads a sqlite asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{Path: s.AbsPath("path")}
	if c.Path == "" {
		s.Errorf("path", "path is required: the database file of a sqlite asset")
	}
	return c
}

// configOf is the sqlite configuration of an asset.
func configOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil {
		return nil, asset.Usagef("asset %s: no sqlite settings (path) in the policy", a.Name)
	}
	return c, nil
}
