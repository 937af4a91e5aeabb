package web

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
)

// securityKey plugs a virtual authenticator (Chromium's DevTools WebAuthn
// domain) into the tab: a CTAP2 key with a PIN that answers at once, as
// a touched key does.
func securityKey(t *testing.T, ctx context.Context) {
	t.Helper()
	run(t, ctx, "add a virtual authenticator", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, webauthn.Enable, webauthn.EnableParams{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
			Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportUsb,
			HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true,
		}})
		return err
	}))
}

func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// TestBrowserApprovalWithSecurityKey: a production restore waits for
// approval; an approver registers a security key on the account page,
// which does not make it count until its line is in webauthn_signers
// (the trust file the dashboard never writes); once it is, approving in
// the browser stores a WebAuthn assertion over the request, and the
// restore, run by a service loaded anew (no dashboard), passes authorize,
// once. A viewer is offered no approval and is refused one. Screenshots
// of each step.
func TestBrowserApprovalWithSecurityKey(t *testing.T) {
	t.Parallel()
	var signers string
	e := makeEnv(t, false, func(dir, addr string) string {
		signers = filepath.Join(dir, "webauthn_signers")
		return fmt.Sprintf("approvals:\n  webauthn_signers: %s\n  webauthn_origin: http://localhost:%s\n  required: 1\n  actions: [restore_production]\n", signers, port(addr))
	})
	// Security keys need a secure context and a domain for the relying
	// party: the browser reaches the dashboard as localhost.
	base := "http://localhost:" + port(e.ts.Listener.Addr().String())
	ctx := t.Context()
	target := filepath.Join(e.dir, "restored")
	restore := app.RestoreRequest{Asset: "notes", To: target, Production: true, UID: -1, GID: -1}
	_, err := e.svc.Restore(ctx, restore)
	var need *approval.RequiredError
	if !errors.As(err, &need) {
		t.Fatalf("a production restore without approval: %v, want a request", err)
	}
	id := need.RequestID

	browser := newChromium(t)
	out := artifacts(t)
	ada := tab(t, browser)
	signInBrowser(t, ada, base, "ada", addUser(t, e, "ada", Approver))
	securityKey(t, ada)
	run(t, ada, "open the account page", chromedp.Steps(chromedp.Navigate(base+"/account"), chromedp.WaitVisible(chromedp.CSS("#register-key"))))
	screenshot(t, ada, out, "account")
	run(t, ada, "register a security key", chromedp.Steps(chromedp.Click(chromedp.CSS("#register-key")), chromedp.WaitVisible(chromedp.CSS("pre.signer-line"))))
	line := strings.TrimSpace(run(t, ada, "read the line to add", chromedp.Text(chromedp.CSS("pre.signer-line"))))
	if !strings.HasPrefix(line, "ada webauthn ") {
		t.Fatalf("the account page shows %q, want a webauthn_signers line of ada", line)
	}
	screenshot(t, ada, out, "account-registered")

	// Registered is not trusted: the approval is refused until the line
	// is in the file.
	approve := chromedp.CSS("#approve-key-" + id)
	run(t, ada, "try to approve", chromedp.Steps(chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(approve), chromedp.Click(approve),
		chromedp.WaitVisible(chromedp.CSS("#webauthn-status.error"))))
	if msg := run(t, ada, "read the refusal", chromedp.Text(chromedp.CSS("#webauthn-status"))); !strings.Contains(msg, "lists no security key of ada") {
		t.Errorf("approving with a key not in webauthn_signers: %q", msg)
	}
	screenshot(t, ada, out, "approval-untrusted-key")
	if err := os.WriteFile(signers, []byte("# approvers' security keys\n"+line+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, ada, "approve with the key", chromedp.Steps(chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(approve), chromedp.Click(approve),
		chromedp.WaitVisible(chromedp.CSS("#approved"))))
	screenshot(t, ada, out, "approved")
	if st := run(t, ada, "read the request's state", chromedp.Text(chromedp.CSS(`tr[data-request="`+id+`"] td.state`))); st != "approved" {
		t.Errorf("the request after one approval of one required: %q, want approved", st)
	}

	// The key registered on the account page also signs ada in, in place
	// of the TOTP code; with a wrong password it does not.
	run(t, ada, "open the account page", chromedp.Steps(chromedp.Navigate(base+"/account"), chromedp.WaitVisible(chromedp.CSS("#signin-keys"))))
	if n := run(t, ada, "read the sign-in keys", chromedp.Text(chromedp.CSS("#signin-keys"))); !strings.Contains(n, "1 security key") {
		t.Errorf("the account page says %q, want 1 sign-in key", n)
	}
	run(t, ada, "sign out", chromedp.Steps(chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.CSS("#signin-key"))))
	run(t, ada, "a wrong password with the key", chromedp.Steps(chromedp.SendKeys(chromedp.CSS("#user"), "ada"), chromedp.SendKeys(chromedp.CSS("#password"), "not the password"),
		chromedp.Click(chromedp.CSS("#signin-key")), chromedp.WaitVisible(chromedp.CSS("#webauthn-status.error"))))
	if msg := run(t, ada, "read the refusal", chromedp.Text(chromedp.CSS("#webauthn-status"))); !strings.Contains(msg, "wrong user name, password or code") {
		t.Errorf("a wrong password with the key: %q", msg)
	}
	run(t, ada, "clear the password", chromedp.Evaluate[bool](`(() => { document.getElementById("password").value = ""; return true })()`))
	run(t, ada, "sign in with the key", chromedp.Steps(chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS("#signin-key")), chromedp.WaitVisible(chromedp.CSS("table.assets"))))
	screenshot(t, ada, out, "signed-in-with-key")

	// A viewer is offered no approval and refused one.
	vera := tab(t, browser)
	signInBrowser(t, vera, base, "vera", addUser(t, e, "vera", Viewer))
	run(t, vera, "open the approvals", chromedp.Steps(chromedp.Navigate(base+"/approvals"), chromedp.WaitVisible(chromedp.CSS("table.approvals"))))
	if n := run(t, vera, "look for approval buttons", chromedp.Evaluate[int](`document.querySelectorAll("button.approve-key, textarea").length`)); n != 0 {
		t.Errorf("a viewer is offered %d ways to approve", n)
	}
	screenshot(t, vera, out, "viewer-approvals")
	// The page's script is not loaded for a viewer (nor its fetch allowed):
	// post the approval as a form carrying the viewer's own CSRF token.
	run(t, vera, "post an approval", chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const f = document.createElement("form"); f.method = "post"; f.action = "/approvals/%s/webauthn";
		for (const [k, v] of [["csrf", document.querySelector('input[name="csrf"]').value], ["credential", "{}"]]) {
			const i = document.createElement("input"); i.type = "hidden"; i.name = k; i.value = v; f.appendChild(i); }
		document.body.appendChild(f); f.submit(); return true })()`, id)))
	run(t, vera, "wait for the refusal", chromedp.WaitVisible(chromedp.CSS("p.error")))
	if msg := run(t, vera, "read the refusal", chromedp.Text(chromedp.CSS("p.error"))); !strings.Contains(msg, "needs the approver role") {
		t.Errorf("a viewer's approval: %q, want a refusal naming the approver role", msg)
	}
	screenshot(t, vera, out, "viewer-refused")

	// The restore is checked by a service that knows nothing of the
	// dashboard: the assertion stored in the repository and the trust file.
	later, err := app.Load(filepath.Join(e.dir, "lifeboat.yaml"), app.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close()
	if _, err := later.Restore(app.WithApproval(ctx, id), restore); err != nil {
		t.Fatalf("the approved restore: %v", err)
	}
	found := false
	filepath.WalkDir(target, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "a.txt" {
			b, _ := os.ReadFile(path)
			found = string(b) == "notes\n"
		}
		return nil
	})
	if !found {
		t.Errorf("the approved restore did not bring back notes' a.txt under %s", target)
	}
	if _, err := later.Restore(app.WithApproval(ctx, id), restore); !errors.Is(err, approval.ErrUsed) {
		t.Errorf("the approval used twice: %v, want ErrUsed", err)
	}
	granted := 0
	err = later.AuditEvents(ctx, app.AuditFilter{}, func(_ *audit.Record, ev *audit.Event) error {
		if ev.Type == audit.TypeApprovalGranted && ev.Request == id && ev.Outcome == audit.OK {
			granted++
			if ev.Details["user"] != "ada" || ev.Details["method"] != "webauthn" || ev.Details["client"] != "127.0.0.1" {
				t.Errorf("the approval's audit event: %+v", ev.Details)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if granted != 1 {
		t.Errorf("%d approval events, want 1", granted)
	}
	keySignIns := map[string]int{}
	err = later.AuditEvents(ctx, app.AuditFilter{}, func(_ *audit.Record, ev *audit.Event) error {
		if ev.Type == AuditSignIn && ev.Details["method"] == "webauthn" && ev.Details["client"] == "127.0.0.1" && ev.Details["user"] == "ada" {
			keySignIns[ev.Outcome]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if keySignIns[audit.OK] != 1 || len(keySignIns) != 2 {
		t.Errorf("security-key sign-in events %v, want one sign-in and one refusal", keySignIns)
	}
}

// TestBrowserOIDC signs in through the provider the test runs, in
// Chromium: the dashboard's link, the provider's redirect back, and the
// overview with the person and their role.
func TestBrowserOIDC(t *testing.T) {
	t.Parallel()
	p := newIDP(t, "lifeboat", "s3cret-of-the-client")
	p.as(map[string]any{"sub": "u-7", "email": "olga@example.com", "email_verified": true, "groups": []string{"ops"}})
	e := makeEnv(t, false, oidcPolicy(p, "localhost"))
	base := "http://localhost:" + port(e.ts.Listener.Addr().String())
	browser := newChromium(t)
	out := artifacts(t)
	olga := tab(t, browser)
	if err := chromedp.Do(olga, chromedp.Navigate(base+"/signin")); err != nil {
		t.Fatalf("open the sign-in page: %v", err)
	}
	screenshot(t, olga, out, "signin")
	run(t, olga, "sign in through the provider", chromedp.Steps(chromedp.Click(chromedp.CSS("#oidc-signin")), chromedp.WaitVisible(chromedp.CSS("table.assets"))))
	who := run(t, olga, "read who is signed in", chromedp.Text(chromedp.CSS("form.signout span")))
	if !strings.Contains(who, "olga@example.com") || !strings.Contains(who, "operator") {
		t.Errorf("signed in as %q, want olga@example.com (operator)", who)
	}
	screenshot(t, olga, out, "overview-oidc")
}
