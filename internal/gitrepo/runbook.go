package gitrepo

import (
	"fmt"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookSteps restores every repository as DIR/NAME.git under root (the
// restore runs git fsck and compares every ref itself); the check lists
// the refs that came back, and the step after is a push to the new home.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	dir := filepath.Join(root, a.Name)
	q := asset.ShellQuote
	return asset.RunbookSteps{
		Target: "--to " + q(dir),
		Checks: []asset.RunbookLine{
			{What: "every repository whole (the restore ran the same check)", Line: fmt.Sprintf("for r in %s/*.git; do git -C \"$r\" fsck --no-progress || echo \"FAILED: $r\"; done", q(dir))},
			{What: "branches and tags that came back", Line: fmt.Sprintf("for r in %s/*.git; do echo \"$r\"; git -C \"$r\" for-each-ref --format='%%(refname) %%(objectname:short)'; done", q(dir))},
		},
		After: []asset.RunbookLine{
			{What: "push a repository to its new home (every branch and tag)", Line: fmt.Sprintf("git -C %s push --mirror NEW-REMOTE-URL", q(filepath.Join(dir, "NAME.git")))},
		},
	}
}
