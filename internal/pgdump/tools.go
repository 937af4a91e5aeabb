package pgdump

import (
	"context"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// tool is one PostgreSQL client program and its version.
type tool = pgbin.Program

// findTool picks the program called name to use against a server of major
// version want, needing at least major version least, by pgbin's one rule
// for finding PostgreSQL programs (see pgbin.FindClient).
func findTool(ctx context.Context, name string, want, least int) (tool, error) {
	return pgbin.FindClient(ctx, name, want, least)
}
