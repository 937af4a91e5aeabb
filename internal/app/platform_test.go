package app_test

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestPlatformDrillOrderAndConfinement: a platform exercise drills the
// gold tier before the assets without a tier, never more than Parallel at
// once; on a fresh host the service opens no other repository while it
// runs, and opens them again afterwards.
func TestPlatformDrillOrderAndConfinement(t *testing.T) {
	t.Parallel()
	svc, err := newService(t, `  - name: notes
    kind: fake
    repositories: [primary]
  - name: wiki
    kind: fake
    repositories: [primary]
`)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, a := range []string{"notes", "wiki", "ledger"} {
		if _, err := svc.Backup(ctx, app.BackupRequest{Asset: a}); err != nil {
			t.Fatal(err)
		}
	}
	other := &policy.Repository{Name: "elsewhere", URL: "file:///nonexistent/elsewhere", KeyFile: "/nonexistent/key"}
	var refused []string
	rep, err := svc.PlatformDrill(ctx, app.PlatformRequest{Repository: "primary", FreshHost: true, Parallel: 1, WorkDir: t.TempDir(),
		Progress: func(r *evidence.DrillReport, err error) {
			if _, oerr := svc.Repository(ctx, other); oerr != nil {
				refused = append(refused, r.Asset+": "+oerr.Error())
			}
		}})
	if err != nil || !rep.Passed {
		t.Fatalf("exercise: %v\n%+v", err, rep)
	}
	if len(refused) != 3 || !strings.Contains(refused[0], "this exercise rehearses a fresh host that has only repository primary") {
		t.Fatalf("other repositories during the exercise: %q", refused)
	}
	var order []string
	for i, m := range rep.Members {
		order = append(order, m.Asset)
		if i > 0 && m.Started.Before(rep.Members[i-1].Ended) {
			t.Errorf("%s started before %s ended, with --parallel 1", m.Asset, rep.Members[i-1].Asset)
		}
		if m.Restored.IsZero() || m.Restored.Before(m.Started) || m.Restored.After(m.Ended) {
			t.Errorf("%s restored at %v, outside its drill %v–%v", m.Asset, m.Restored, m.Started, m.Ended)
		}
	}
	if got := strings.Join(order, ","); got != "ledger,notes,wiki" {
		t.Fatalf("drill order %s", got)
	}
	if len(rep.Tiers) != 2 || rep.Tiers[0].Tier != "gold" || rep.Tiers[0].RTOMet == nil || !*rep.Tiers[0].RTOMet || rep.Tiers[1].Tier != "" {
		t.Fatalf("tiers %+v", rep.Tiers)
	}
	// Confinement ends with the exercise.
	if _, err := svc.Repository(ctx, other); err == nil || strings.Contains(err.Error(), "fresh host") {
		t.Fatalf("after the exercise: %v", err)
	}
}
