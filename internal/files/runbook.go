package files

import (
	"fmt"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookSteps restores the tree under root (each backed-up path keeps
// its absolute path below it), lists it for a count against the
// snapshot's, and, for putting it back, names the in-place restore that
// rewrites only what differs.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	dir := filepath.Join(root, a.Name)
	q := asset.ShellQuote
	steps := asset.RunbookSteps{
		Target: "--to " + q(dir),
		Checks: []asset.RunbookLine{
			{What: "files restored: compare with the FILES column of lifeboat snapshots " + q(a.Name), Line: fmt.Sprintf("find %s -mindepth 1 -not -type d | wc -l", q(dir))},
		},
	}
	if c, err := configOf(a); err == nil {
		for _, p := range c.Paths {
			steps.Checks = append(steps.Checks, asset.RunbookLine{What: "what differs from the live " + p + " (nothing, when it is intact)",
				Line: fmt.Sprintf("diff -r --no-dereference %s %s", q(filepath.Join(dir, p)), q(p))})
		}
	}
	return steps
}
