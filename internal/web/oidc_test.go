package web

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
)

// oidcPolicy is the web section signing in through p, with the callback
// at host (the name the browser reaches the dashboard by) and addr's port.
func oidcPolicy(p *idp, host string) func(dir, addr string) string {
	return func(_, addr string) string {
		port := addr[strings.LastIndexByte(addr, ':')+1:]
		return fmt.Sprintf(`web:
  oidc:
    issuer: %s
    client_id: %s
    client_secret: %s
    redirect_url: http://%s:%s/oidc/callback
    roles: {dba: approver, ops: operator}
    default_role: none
`, p.issuer(), p.clientID, p.secret, host, port)
	}
}

// oidcSignIn goes through the flow as a browser does: the dashboard sends
// it to the provider, the provider back with a code; the page that ends
// it is returned.
func oidcSignIn(t *testing.T, b *browser) *browser {
	t.Helper()
	b.do("GET", "/oidc/login", nil)
	if b.status != http.StatusSeeOther {
		t.Fatalf("GET /oidc/login: %d %s", b.status, b.body)
	}
	to := b.location
	resp, err := b.c.Get(to)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("the provider's authorization: %d", resp.StatusCode)
	}
	cb, _ := url.Parse(resp.Header.Get("Location"))
	return b.do("GET", cb.RequestURI(), nil)
}

// TestOIDCSignIn signs in through a provider started by the test: the
// authorization code flow with PKCE and a nonce, the role from the groups
// claim, and the refusals (a state not this browser's, a replayed
// callback, a nonce not this sign-in's, a person no group maps to); every
// sign-in and refusal an audit event with the client's address.
func TestOIDCSignIn(t *testing.T) {
	t.Parallel()
	p := newIDP(t, "lifeboat", "s3cret-of-the-client")
	e := makeEnv(t, false, oidcPolicy(p, "127.0.0.1"))

	b := newBrowser(t, e.ts.URL)
	if !strings.Contains(b.do("GET", "/signin", nil).body, `href="/oidc/login"`) {
		t.Fatal("the sign-in page does not offer the provider")
	}
	p.as(map[string]any{"sub": "u-1", "email": "dora@example.com", "email_verified": true, "groups": []string{"staff", "dba"}})
	end := oidcSignIn(t, b)
	if end.status != http.StatusOK || !strings.Contains(end.body, `http-equiv="refresh"`) {
		t.Fatalf("the callback: %d\n%s", end.status, end.body)
	}
	if err := wellFormed(end.body); err != nil {
		t.Errorf("the page after sign-in: %v", err)
	}
	if b.do("GET", "/", nil).status != http.StatusOK || !strings.Contains(b.body, "dora@example.com</a> (approver)") {
		t.Fatalf("the overview after sign-in: %d\n%s", b.status, b.body)
	}
	if q := p.authorized[0]; q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Errorf("the authorization request lacks PKCE, nonce or state: %v", q)
	}

	// A callback with a state this browser did not begin: refused.
	replay := newBrowser(t, e.ts.URL)
	if replay.do("GET", "/oidc/callback?state=forged&code=x", nil).status != http.StatusForbidden {
		t.Errorf("a callback with another browser's state: %d, want 403", replay.status)
	}
	// The same browser coming back twice with one state.
	again := newBrowser(t, e.ts.URL)
	again.do("GET", "/oidc/login", nil)
	resp, err := again.c.Get(again.location)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, _ := url.Parse(resp.Header.Get("Location"))
	if again.do("GET", back.RequestURI(), nil).status != http.StatusOK {
		t.Fatalf("first callback: %d %s", again.status, again.body)
	}
	if again.do("GET", back.RequestURI(), nil).status != http.StatusForbidden {
		t.Errorf("a replayed callback: %d, want 403", again.status)
	}

	// An ID token with another nonce.
	p.mu.Lock()
	p.wrongNonce = true
	p.mu.Unlock()
	if end := oidcSignIn(t, newBrowser(t, e.ts.URL)); end.status != http.StatusUnauthorized || !strings.Contains(end.body, "nonce") {
		t.Errorf("a token with another nonce: %d %s", end.status, end.body)
	}
	// Nobody's group maps to a role and there is no default: refused.
	p.as(map[string]any{"sub": "u-2", "email": "gus@example.com", "groups": []string{"guests"}})
	guest := newBrowser(t, e.ts.URL)
	if end := oidcSignIn(t, guest); end.status != http.StatusForbidden || !strings.Contains(end.body, "no role") {
		t.Errorf("a person of no group: %d %s", end.status, end.body)
	}
	if guest.do("GET", "/api/assets", nil).status != http.StatusUnauthorized {
		t.Errorf("the refused person reads the API: %d", guest.status)
	}

	var ok, refused int
	err = e.svc.AuditEvents(t.Context(), app.AuditFilter{}, func(_ *audit.Record, ev *audit.Event) error {
		if ev.Type != AuditSignIn || ev.Details["method"] != "oidc" {
			return nil
		}
		if ev.Details["client"] != "127.0.0.1" {
			t.Errorf("an OpenID Connect sign-in event without the client address: %+v", ev.Details)
		}
		if ev.Outcome == audit.OK {
			ok++
		} else {
			refused++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok != 2 || refused != 4 {
		t.Errorf("audit: %d OpenID Connect sign-ins and %d refusals, want 2 and 4", ok, refused)
	}
}
