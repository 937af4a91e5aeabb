package bucket

import (
	"fmt"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookSteps restores the objects as files under root (a restore into a
// bucket takes --to s3://BUCKET/PREFIX/ instead, docs/bucket.md); the
// check counts them against the snapshot's listing.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	dir := filepath.Join(root, a.Name)
	q := asset.ShellQuote
	return asset.RunbookSteps{
		Target: "--to " + q(dir),
		Checks: []asset.RunbookLine{
			{What: "objects restored: compare with the FILES column of lifeboat snapshots " + q(a.Name), Line: fmt.Sprintf("find %s -type f | wc -l", q(dir))},
		},
	}
}
