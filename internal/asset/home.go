package asset

import "github.com/lifeboat-dr/lifeboat/internal/policy"

// Homed is a kind whose assets live at places of their own on this host
// (a postgres asset's data directory, a sqlite file, a files asset's
// paths): a restore that writes onto one of them replaces production, and
// the approvals of the policy (restore_production) treat it so.
type Homed interface {
	// Homes are the absolute paths the asset is backed up from; none when
	// its settings are missing.
	Homes(a *policy.Asset) []string
}
