package policy

import (
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

// keysOnly stands in for a kind of internal/app's registry, which this
// package does not import: it takes the keys the real kind takes (a name
// ending in "[]" is a list) and reads each without judging it, so that the
// tests here cover what the policy package owns. What a kind makes of its
// keys is tested in its package, and every kind together in internal/app.
type keysOnly []string

func (k keysOnly) ConfigKeys() []string {
	out := make([]string, len(k))
	for i, key := range k {
		out[i] = strings.TrimSuffix(key, "[]")
	}
	return out
}

func (k keysOnly) DecodeConfig(s *Section) any {
	got := map[string]any{}
	for _, key := range k {
		if list, ok := strings.CutSuffix(key, "[]"); ok {
			if s.Has(list) {
				got[list] = s.Strings(list)
			}
		} else if s.Has(key) {
			got[key] = s.String(key)
		}
	}
	return got
}

// testKinds are the kinds the tests read policies with, under the names
// and with the keys of the real ones.
var testKinds = Kinds{
	lifeboat.KindPostgres: keysOnly{"pgdata", "dsn", "block_size"},
	lifeboat.KindPGDump:   keysOnly{"dsn", "databases[]", "schemas[]", "exclude_schemas[]", "exclude_table_data[]", "globals"},
	lifeboat.KindSQLite:   keysOnly{"path"},
	lifeboat.KindFiles:    keysOnly{"paths[]", "exclude[]"},
	lifeboat.KindGit:      keysOnly{"remotes[]", "remotes_file"},
}
