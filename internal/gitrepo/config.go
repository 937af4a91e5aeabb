package gitrepo

import (
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Config is a git asset's own part of the policy.
type Config struct {
	// Remotes are the repositories backed up: URLs or absolute paths.
	Remotes []string
	// RemotesFile names a file listing more, one per line (absolute; a
	// relative path in the policy is taken from the policy file's
	// directory); "" for none. It is read at each backup.
	RemotesFile string
}

var _ asset.Configurer = kind{}

// ConfigKeys are the policy keys of a git asset beyond the shared ones.
func (kind) ConfigKeys() []string { return []string{"remotes", "remotes_file"} }

// DecodeConfig reads a git asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{Remotes: s.Strings("remotes"), RemotesFile: s.File("remotes_file")}
	if len(c.Remotes) == 0 && c.RemotesFile == "" {
		s.Errorf("remotes", "a git asset needs remotes (URLs or absolute paths) or a remotes_file")
	}
	// What git may not be pointed at (ext::, plain http, ...) is refused
	// when the policy is read, not at the first backup.
	for _, r := range c.Remotes {
		if err := checkRemote(r); err != nil {
			s.Errorf("remotes", "%v", err)
		}
	}
	return c
}

// configOf is the git configuration of an asset.
func configOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil {
		return nil, asset.Usagef("asset %s: no git settings (remotes) in the policy", a.Name)
	}
	return c, nil
}
