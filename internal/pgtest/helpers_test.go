package pgtest

import "github.com/lifeboat-dr/lifeboat/internal/pgbin"

// The tests of this package predate internal/pgbin and name these helpers as they were called
// when they lived here.

func quoteConf(s string) string { return pgbin.QuoteConf(s) }

func lookupUser(name string) (uid, gid int, ok bool) {
	u, err := pgbin.LookupUser(name)
	if err != nil {
		return 0, 0, false
	}
	return u.UID, u.GID, true
}

const envPGBin = pgbin.EnvBin
