package daemon

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
)

// TestScheduledPlatformDrill: platform_drill.schedule makes serve run the
// platform exercise (drill --platform) at its slot, as a job of its own
// recorded as #platform, alongside the assets' own schedules.
func TestScheduledPlatformDrill(t *testing.T) {
	h := newHarness(t, "", "")
	h.writePolicy(asset("db", "")+asset("app", ""),
		"groups:\n  payments: [db]\nplatform_drill:\n  schedule: \"0 11 14 3 *\"\n  group: payments\n")
	h.start()
	h.advanceTo(at(10, 59, 59))
	h.noChild()
	h.advanceTo(at(11, 0, 0))
	c := h.next()
	if c.Action != ActionPlatform || c.Asset != "" {
		t.Fatalf("child %q %q, want the platform exercise", c.Action, c.Asset)
	}
	c.ok("")
	rs := h.waitRuns("the exercise to end", ended(1))
	if r := rs[0]; r.Asset != PlatformKey || r.Kind != "drill" || r.Result != catalog.OK || r.Trigger != "schedule" {
		t.Fatalf("recorded as %+v", r)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
}

// TestExecRunnerPlatform: the platform exercise's child is
// `lifeboat -c CONFIG drill --platform --trigger schedule`.
func TestExecRunnerPlatform(t *testing.T) {
	t.Parallel()
	out := newOutputBuffer(200)
	x := execRunner(t).Run(Child{Action: ActionPlatform, Stdout: out, Stderr: out})
	if x.Result == nil || x.Result.Result != catalog.OK || x.Status != "" {
		t.Fatalf("exit %+v, output %q", x, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != "drill --platform --trigger schedule" {
		t.Fatalf("child ran with %q", got)
	}
}
