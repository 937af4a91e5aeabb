package asset

import (
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Runbooker is a kind that writes its own part of the recovery runbook
// (lifeboat runbook, docs/runbook.md): where a restore of the asset goes,
// what brings the restored copy up, and how to check it. The runbook's
// restore lines themselves (latest point, a time, a snapshot, each
// repository) are the service's, the same for every kind; a kind without
// this capability restores to a directory and lists no steps after.
type Runbooker interface {
	Kind
	// RunbookSteps is the part of the runbook for asset a, restored
	// under the directory root (a scratch place the runbook names, never
	// the production location).
	RunbookSteps(a *policy.Asset, root string) RunbookSteps
}

// RunbookSteps is a kind's part of an asset's runbook entry.
type RunbookSteps struct {
	// Target is the restore's destination as flags, e.g. "--to
	// /var/tmp/lifeboat-restore/ledger"; already shell-quoted.
	Target string
	// Setup are commands to run before the restore (an empty database to
	// restore into).
	Setup []RunbookLine
	// After are the commands that bring the restored copy up (start the
	// server); Checks those that show it is good.
	After  []RunbookLine
	Checks []RunbookLine
}

// RunbookLine is one command of a runbook and what it does.
type RunbookLine struct {
	What string `json:"what"`
	Line string `json:"line"`
}

// ShellQuote quotes s for a POSIX shell, leaving it bare when it holds
// nothing the shell reads specially: runbook lines are copied and pasted.
func ShellQuote(s string) string {
	if s != "" && trimSafe(s) == "" {
		return s
	}
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, `'\''`...)
			continue
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

func trimSafe(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/' || c == ':' || c == '=' || c == '@' || c == ',' || c == '+') {
			return s[i:]
		}
	}
	return ""
}

// ValidationLines are the drill's validation queries of a as runbook
// checks, each run by the command line run makes for its database and SQL
// (psql on a restored server, sqlite3 on a restored file).
func ValidationLines(a *policy.Asset, run func(database, sql string) string) []RunbookLine {
	if a.Drill == nil {
		return nil
	}
	var out []RunbookLine
	for _, q := range a.Drill.Checks {
		out = append(out, RunbookLine{What: fmt.Sprintf("%s: expect %s", q.Name, q.Expect), Line: run(q.Database, q.SQL)})
	}
	return out
}
