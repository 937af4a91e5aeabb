package health

import (
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestVersioning: a repository whose store has versions gets a
// versioning item, failing when versioning is off; one without (a
// directory) gets none.
func TestVersioning(t *testing.T) {
	t.Parallel()
	p, err := policy.Parse([]byte(testPolicy), "lifeboat.yaml", policy.Kinds{lifeboat.KindPostgres: nil, lifeboat.KindFiles: nil})
	if err != nil {
		t.Fatal(err)
	}
	off := "versioning is off on the bucket of s3://b/dr: an object overwritten ... cannot be brought back"
	rs := Evaluate(p, Facts{Now: time.Now(), Versioning: map[string]string{"main": "", "dr": off}})
	if r := find(t, rs, "", CheckVersioning, "main"); !r.OK || r.Message != "versioning is on" {
		t.Errorf("main: %+v", r)
	}
	if r := find(t, rs, "", CheckVersioning, "dr"); r.OK || !strings.Contains(r.Message, "versioning is off") {
		t.Errorf("dr: %+v", r)
	}
	for _, r := range Evaluate(p, Facts{Now: time.Now()}) {
		if r.Check == CheckVersioning {
			t.Errorf("a versioning item for a store without versions: %+v", r)
		}
	}
}
