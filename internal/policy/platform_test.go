package policy

import (
	"strings"
	"testing"
)

const platformBase = `repositories:
  - name: primary
    url: file:///srv/repo
    passphrase: x
  - name: offsite
    url: file:///srv/offsite
    passphrase: x
tiers:
  gold: { rpo: 5m, rto: 1h }
  bronze: { rpo: 24h, rto: 24h }
  silver: { rpo: 1h, rto: 4h }
assets:
  - name: ledger
    kind: sqlite
    tier: silver
    path: /srv/a.db
    repositories: [primary, offsite]
  - name: docs
    kind: files
    paths: [/srv/docs]
    repositories: [primary]
  - name: core
    kind: sqlite
    tier: gold
    path: /srv/b.db
    repositories: [primary]
`

// TestPlatformDrillPolicy: groups and platform_drill are read and checked
// against the assets and repositories; tiers recover tightest RTO first.
func TestPlatformDrillPolicy(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(platformBase+`groups:
  payments: [ledger, core]
platform_drill:
  schedule: "0 3 1 */6 *"
  repository: offsite
  group: payments
  fresh_host: true
  parallel: 2
  whole_tiers: true
`), "lifeboat.yaml", testKinds)
	if err != nil {
		t.Fatal(err)
	}
	pd := p.PlatformDrill
	if pd == nil || pd.Schedule != "0 3 1 */6 *" || pd.Repository != "offsite" || pd.Group != "payments" || !pd.FreshHost || pd.Parallel != 2 || !pd.WholeTiers {
		t.Fatalf("platform_drill read as %+v", pd)
	}
	as, err := p.GroupAssets("payments")
	if err != nil || len(as) != 2 || as[0].Name != "ledger" || as[1].Name != "core" {
		t.Fatalf("group payments: %v %v", as, err)
	}
	if all, _ := p.GroupAssets(""); len(all) != 3 {
		t.Fatalf("every asset: %d", len(all))
	}
	if _, err := p.GroupAssets("nope"); err == nil || !strings.Contains(err.Error(), "payments") {
		t.Fatalf("unknown group: %v", err)
	}
	got := strings.Join(p.TierOrder([]string{"", "bronze", "gold", "silver"}), ",")
	if got != "gold,silver,bronze," {
		t.Fatalf("tier order %q", got)
	}

	for _, c := range []struct{ yaml, want string }{
		{"groups:\n  payments: [ledger, ghost]\n", `groups.payments[1]: no asset is called "ghost"`},
		{"groups:\n  payments: []\n", "group payments names no asset"},
		{"platform_drill:\n  group: payments\n", `platform_drill.group: no group is called "payments"`},
		{"platform_drill:\n  repository: elsewhere\n", "platform_drill.repository"},
		{"platform_drill:\n  fresh_host: true\n", "fresh_host needs repository"},
		{"platform_drill:\n  schedule: \"not cron\"\n", "platform_drill.schedule"},
		{"platform_drill:\n  parallel: 0\n", "parallel must be a whole number of at least 1"},
		{"platform_drill:\n  repository: offsite\n  sometimes: yes\n", "sometimes"},
	} {
		_, err := Parse([]byte(platformBase+c.yaml), "lifeboat.yaml", testKinds)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.yaml, err, c.want)
		}
	}
}
