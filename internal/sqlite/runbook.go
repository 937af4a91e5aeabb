package sqlite

import (
	"fmt"
	"path/filepath"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

var _ asset.Runbooker = kind{}

// RunbookSteps restores the database to a file under root; the checks
// are the ones a drill runs (integrity_check, then the drill's queries),
// through the sqlite3 shell. Bringing it back is moving the file into
// place with the application stopped.
func (kind) RunbookSteps(a *policy.Asset, root string) asset.RunbookSteps {
	file := filepath.Join(root, a.Name+".db")
	q := asset.ShellQuote
	run := func(_, sql string) string { return fmt.Sprintf("sqlite3 -readonly %s %s", q(file), q(sql)) }
	steps := asset.RunbookSteps{
		Target: "--to " + q(file),
		Checks: append([]asset.RunbookLine{{What: "page and index structure: expect ok", Line: run("", "PRAGMA integrity_check")}},
			asset.ValidationLines(a, run)...),
	}
	if c, err := configOf(a); err == nil && c.Path != "" {
		steps.After = []asset.RunbookLine{{What: "with the application stopped, put the restored file in place (and remove a stale -wal and -shm beside it)",
			Line: fmt.Sprintf("cp -p %s %s", q(file), q(c.Path))}}
	}
	return steps
}
