package pgdump

import (
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// Config is a pg_dump asset's own part of the policy.
type Config struct {
	// DSN is the libpq connection string; its database is dumped when
	// Databases is empty. It may hold a password: pass it through
	// policy.RedactDSN before printing.
	DSN string
	// Databases, Schemas, ExcludeSchemas and ExcludeTableData shape the
	// dump: the databases dumped, the schemas included or left out, and
	// the tables whose definition is kept but whose rows are not
	// (patterns as pg_dump takes them).
	Databases        []string
	Schemas          []string
	ExcludeSchemas   []string
	ExcludeTableData []string
	// Globals says whether roles (without passwords) and tablespaces are
	// kept too; true unless the policy says false.
	Globals bool
}

var _ asset.Configurer = kind{}

// ConfigKeys are the policy keys of a pg_dump asset beyond the shared ones.
func (kind) ConfigKeys() []string {
	return []string{"dsn", "databases", "schemas", "exclude_schemas", "exclude_table_data", "globals"}
}

// DecodeConfig reads a pg_dump asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{DSN: s.String("dsn"), Globals: s.Bool("globals", true)}
	if c.DSN == "" {
		s.Errorf("dsn", `dsn is required for a pg_dump asset, e.g. "host=/var/run/postgresql user=postgres dbname=app"`)
	}
	for _, l := range []struct {
		key  string
		list *[]string
	}{{"databases", &c.Databases}, {"schemas", &c.Schemas}, {"exclude_schemas", &c.ExcludeSchemas}, {"exclude_table_data", &c.ExcludeTableData}} {
		*l.list = s.Strings(l.key)
		for j, v := range *l.list {
			if strings.TrimSpace(v) == "" {
				s.ItemErrorf(l.key, j, "empty name in %s", l.key)
			}
		}
	}
	return c
}

// configOf is the pg_dump configuration of an asset.
func configOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil {
		return nil, asset.Usagef("asset %s: no pg_dump settings (dsn) in the policy", a.Name)
	}
	return c, nil
}
