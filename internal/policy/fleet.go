package policy

import (
	"net/url"
	"os"
	"slices"
	"strings"
	"unicode"
)

// Fleet is the policy's shared catalog (docs/fleet.md): with Catalog set,
// every host's runs, drills, verifies, audit events and asset states are
// also kept in one PostgreSQL database, each under the host's name.
type Fleet struct {
	// Catalog is the PostgreSQL connection URL (postgres:// or
	// postgresql://), ${NAME} expanded; a Secret because it usually holds
	// a password. Empty: the catalog is this host's SQLite file only.
	Catalog Secret
	// Host is this agent's name in the fleet: policy key host, else the
	// machine's host name.
	Host string
	Line int // the catalog key's line, 0 when absent
}

// Enabled reports whether the policy names a shared catalog.
func (f Fleet) Enabled() bool { return f.Catalog != "" }

// sslModes are libpq's sslmode values, which pgx takes too.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// fleet reads the catalog and host keys. Messages never quote the URL:
// it holds the password.
func (c *converter) fleet(rawCatalog, rawHost string) Fleet {
	f := Fleet{Line: c.idx.line("catalog", 0)}
	if c.idx.has("catalog") {
		u := c.nonEmpty("catalog", rawCatalog)
		if u != "" {
			if msg := catalogURLProblem(u); msg != "" {
				c.fail("catalog", f.Line, msg)
			} else {
				f.Catalog = Secret(u)
			}
		}
	}
	if c.idx.has("host") {
		f.Host = c.nonEmpty("host", rawHost)
		if f.Host != "" && (len(f.Host) > 253 || strings.IndexFunc(f.Host, func(r rune) bool {
			return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/'
		}) >= 0) {
			c.fail("host", 0, "host must be a name without spaces or slashes, at most 253 bytes, e.g. db-1")
		}
		return f
	}
	if h, err := os.Hostname(); err == nil {
		f.Host = h
	}
	if f.Host == "" && f.Catalog != "" {
		c.fail("catalog", f.Line, "this machine has no host name: set host: to this agent's name in the fleet")
	}
	return f
}

// catalogURLProblem says what is wrong with a catalog URL, "" when
// nothing is.
func catalogURLProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		// url's message repeats the URL, password included.
		return "catalog is not a URL: want postgres://user:password@host/database?sslmode=verify-full"
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "catalog must be a postgres:// or postgresql:// URL, e.g. postgres://lifeboat@catalog.internal/lifeboat?sslmode=verify-full"
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return "catalog names no server: want postgres://user@host[:port]/database"
	}
	if p := u.Port(); p != "" {
		for _, r := range p {
			if r < '0' || r > '9' {
				return "catalog's port is not a number"
			}
		}
	}
	if strings.Trim(u.Path, "/") == "" {
		return "catalog names no database: want postgres://user@host/database"
	}
	if m := u.Query().Get("sslmode"); m != "" && !slices.Contains(sslModes, m) {
		return "catalog's sslmode " + m + " is not one of " + strings.Join(sslModes, ", ")
	}
	return ""
}
