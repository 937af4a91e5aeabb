package policy

import (
	"fmt"
	"strings"
	"testing"
)

// TestDrillHost: drill_host names the agent that runs the drills; a name
// no agent could have is refused at its line.
func TestDrillHost(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(repoOK+assetOK), "lifeboat.yaml", testKinds)
	if err != nil || p.DrillHost != "" {
		t.Fatalf("absent: %q, %v", p.DrillHost, err)
	}
	p, err = Parse([]byte(repoOK+assetOK+"drill_host: drills-1\n"), "lifeboat.yaml", testKinds)
	if err != nil || p.DrillHost != "drills-1" {
		t.Fatalf("set: %q, %v", p.DrillHost, err)
	}
	for _, src := range []string{"drill_host: 'a b'\n", "drill_host: a/b\n", "drill_host: ''\n"} {
		_, err := Parse([]byte(repoOK+assetOK+src), "lifeboat.yaml", testKinds)
		line := strings.Count(repoOK+assetOK, "\n") + 1
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("lifeboat.yaml:%d: drill_host", line)) {
			t.Errorf("%q: %v", src, err)
		}
	}
}
