package files

import (
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Config is a files asset's own part of the policy.
type Config struct {
	// Paths are the directories and files backed up, absolute and
	// cleaned.
	Paths []string
	// Exclude are the glob patterns left out, matched against the base
	// name and against the path below each root.
	Exclude []string
}

var _ asset.Configurer = kind{}

// ConfigKeys are the policy keys of a files asset beyond the shared ones.
func (kind) ConfigKeys() []string { return []string{"paths", "exclude"} }

// DecodeConfig reads a files asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{Exclude: s.Strings("exclude")}
	paths := s.Strings("paths")
	if len(paths) == 0 {
		s.Errorf("paths", "a files asset needs paths: the absolute directories and files to back up")
	}
	for j, p := range paths {
		switch p = filepath.Clean(p); {
		case paths[j] == "":
			s.ItemErrorf("paths", j, "path is required: a directory or file")
		case !filepath.IsAbs(p):
			s.ItemErrorf("paths", j, "path %q must be an absolute path", p)
		default:
			c.Paths = append(c.Paths, p)
		}
	}
	for j, pat := range c.Exclude {
		if _, err := filepath.Match(pat, ""); err != nil || pat == "" {
			s.ItemErrorf("exclude", j, "invalid pattern %q: use shell globs such as *.tmp or cache/*", pat)
		}
	}
	return c
}

// configOf is the files configuration of an asset.
func configOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil {
		return nil, asset.Usagef("asset %s: no files settings (paths) in the policy", a.Name)
	}
	return c, nil
}
