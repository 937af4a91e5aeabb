package web

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// chromium finds Debian's Chromium (scripts/install-test-deps.sh installs
// it): skipped on a laptop without it, a failure in CI.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.SkipOrFail(t, "chromium", "not installed (scripts/install-test-deps.sh installs it)")
	return ""
}

// newChromium starts a headless Chromium with a profile of its own in a
// temporary directory (HOME too, so nothing is written to the user's),
// without the sandbox only when the test runs as root, which Chromium's
// sandbox refuses.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	bin := chromium(t)
	home := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.UserDataDir(filepath.Join(home, "profile")),
		chromedp.Env("HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home), chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancel := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()), opts...)
	t.Cleanup(cancel)
	// The first run starts the browser; tabs are then made in browser
	// contexts of their own.
	root, cancelRoot := chromedp.NewContext(actx)
	t.Cleanup(cancelRoot)
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return root
}

// tab is one browser context (its own cookies) of the Chromium.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return ctx
}

func run[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(tctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := run(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func signInBrowser(t *testing.T, ctx context.Context, base, user, secret string) {
	t.Helper()
	// The first Run on a tab starts it: no timeout there, or the timeout
	// would end the tab (see chromedp.Run).
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/signin")); err != nil {
		t.Fatalf("open the sign-in page: %v", err)
	}
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "fill in the sign-in form", chromedp.Steps(
		chromedp.SendKeys(chromedp.CSS("#user"), user), chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"), chromedp.SendKeys(chromedp.CSS("#code"), code),
		chromedp.Click(chromedp.CSS(`form.signin button[type="submit"]`)), chromedp.WaitVisible(chromedp.CSS("table.assets"))))
}

// TestBrowser drives the dashboard in a real Chromium: sign-in with a
// password and a TOTP code, the overview's states, an asset's snapshots,
// what a viewer is not offered, a form posted without its CSRF token;
// a screenshot of every page.
func TestBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	browser := newChromium(t)
	out := artifacts(t)
	base := e.ts.URL

	admin := tab(t, browser)
	signInBrowser(t, admin, base, "ada", addUser(t, e, "ada", Admin))
	screenshot(t, admin, out, "overview")
	want := map[string]string{"notes": StateOK, "docs": StateWarning, "ledger": StateFailing, "spare": StateFailing}
	for name, state := range want {
		got := run(t, admin, "state of "+name, chromedp.AttributeValue(chromedp.CSS(`tr[data-asset="`+name+`"]`), "data-state"))
		if got.Value != state {
			t.Errorf("%s: the overview shows %q, want %q", name, got.Value, state)
		}
	}

	// The page shows the API's numbers (which TestOverviewStates holds to
	// status and check): last backup, copies' lag, the last drill's RTO.
	var rows []AssetRow
	e.get(t, e.token(t, Viewer), "/api/assets", &rows)
	for _, r := range rows {
		cell := func(class string) string {
			return run(t, admin, class+" of "+r.Name, chromedp.Text(chromedp.CSS(`tr[data-asset="`+r.Name+`"] td.`+class)))
		}
		if got, want := cell("last-backup"), stampText(r.LastBackup); got != want {
			t.Errorf("%s: the overview shows last backup %q, the API %q", r.Name, got, want)
		}
		for _, c := range r.Copies {
			if c.Lag != nil && !strings.Contains(cell("copies"), fmt.Sprintf("%s: %d WAL, %d snapshots", c.Repository, c.Lag.WALFiles, c.Lag.Snapshots)) {
				t.Errorf("%s: the overview's copies %q lack %s's lag %+v", r.Name, cell("copies"), c.Repository, c.Lag)
			}
		}
		if d := r.LastDrill; d != nil && !strings.Contains(cell("last-drill"), "RTO "+seconds(d.RTOSeconds)) {
			t.Errorf("%s: the overview's last drill %q, the API's RTO %s", r.Name, cell("last-drill"), seconds(d.RTOSeconds))
		}
	}

	run(t, admin, "open the docs page", chromedp.Steps(chromedp.Navigate(base+"/assets/"+host()+"/docs"), chromedp.WaitVisible(chromedp.CSS("table.snapshots"))))
	// The primary holds the one snapshot; the copy lacks it.
	if n := run(t, admin, "count snapshots", chromedp.Evaluate[int](`document.querySelectorAll("table.snapshots tr.snapshot").length`)); n != 1 {
		t.Errorf("the docs page shows %d snapshot rows, want 1", n)
	}
	if n := run(t, admin, "count bars", chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.snapshot").length`)); n != 1 {
		t.Errorf("the docs timeline draws %d snapshots, want 1", n)
	}
	screenshot(t, admin, out, "asset-docs")
	run(t, admin, "open the ledger page", chromedp.Steps(chromedp.Navigate(base+"/assets/"+host()+"/ledger"), chromedp.WaitVisible(chromedp.CSS("table.drills"))))
	if n := run(t, admin, "count phases", chromedp.Evaluate[int](`document.querySelectorAll("svg.chart rect.phase").length`)); n == 0 {
		t.Error("the ledger page draws no drill phases")
	}
	screenshot(t, admin, out, "asset-ledger")
	for _, p := range []struct{ path, sel, name string }{
		{"/drills", "table.drills", "drills"}, {"/report", "section#summary", "report"}, {"/approvals", "table.approvals", "approvals"}, {"/audit", "table.audit", "audit"},
	} {
		run(t, admin, "open "+p.path, chromedp.Steps(chromedp.Navigate(base+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel))))
		screenshot(t, admin, out, p.name)
	}

	// The form posted without its CSRF token (removed from the page) is
	// refused, and nothing is backed up.
	before, err := e.svc.Snapshots(t.Context(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	run(t, admin, "open the notes page", chromedp.Steps(chromedp.Navigate(base+"/assets/"+host()+"/notes"), chromedp.WaitVisible(chromedp.CSS("#backup-now"))))
	run(t, admin, "remove the CSRF token", chromedp.Evaluate[bool](`(() => { for (const i of document.querySelectorAll('form input[name="csrf"]')) i.remove(); return true })()`))
	run(t, admin, "post the form", chromedp.Steps(chromedp.Click(chromedp.CSS("#backup-now")), chromedp.WaitVisible(chromedp.CSS("p.error"))))
	msg := run(t, admin, "read the refusal", chromedp.Text(chromedp.CSS("p.error")))
	if !strings.Contains(msg, "CSRF") {
		t.Errorf("the form without its token: %q, want a refusal naming the CSRF token", msg)
	}
	screenshot(t, admin, out, "csrf-refused")
	after, err := e.svc.Snapshots(t.Context(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("a backup ran on a form without its CSRF token")
	}

	// A viewer sees the pages but no action.
	viewer := tab(t, browser)
	signInBrowser(t, viewer, base, "vera", addUser(t, e, "vera", Viewer))
	run(t, viewer, "open the notes page", chromedp.Steps(chromedp.Navigate(base+"/assets/"+host()+"/notes"), chromedp.WaitVisible(chromedp.CSS("table.snapshots"))))
	if n := run(t, viewer, "look for the backup button", chromedp.Evaluate[int](`document.querySelectorAll("#backup-now").length`)); n != 0 {
		t.Error("a viewer is offered the backup button")
	}
	screenshot(t, viewer, out, "viewer-asset")
}
