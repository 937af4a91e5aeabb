package pgdump

import (
	"os"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// TestMain lets the package's tests start real PostgreSQL servers, which
// refuse to run as root.
func TestMain(m *testing.M) {
	os.Exit(pgtest.RunMain(m, pgtest.MainOptions{}))
}
