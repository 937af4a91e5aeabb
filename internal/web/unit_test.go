package web

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
)

// TestTimelineWindowAndGap: a PostgreSQL asset's restorable windows are
// drawn green over a red band, so that what cannot be restored (before a
// new timeline's window, after a missing WAL file) shows red.
func TestTimelineWindowAndGap(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	ri := app.RepositoryInfo{
		Status: app.StatusRow{Asset: "ledger", Repository: "primary"},
		Snapshots: []app.SnapshotRow{
			{ID: "aaaaaaaaaaaa", StartTime: now.Add(-48 * time.Hour), StopTime: now.Add(-47 * time.Hour), BytesTotal: 100},
			{ID: "bbbbbbbbbbbb", StartTime: now.Add(-24 * time.Hour), StopTime: now.Add(-23 * time.Hour), BytesTotal: 200},
		},
		Windows: []asset.RecoveryWindow{
			{Timeline: 1, EarliestTime: now.Add(-47 * time.Hour), LatestTime: now.Add(-30 * time.Hour), Gap: "000000010000000000000007"},
			{Timeline: 1, EarliestTime: now.Add(-23 * time.Hour), LatestTime: now.Add(-time.Minute)},
		},
	}
	svg := string(timeline(ri, now))
	if err := wellFormed(svg); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(svg, `class="window"`); n != 2 {
		t.Errorf("%d windows drawn, want 2", n)
	}
	if n := strings.Count(svg, `class="snapshot"`); n != 2 {
		t.Errorf("%d snapshots drawn, want 2", n)
	}
	if !strings.Contains(svg, `class="gap"`) || !strings.Contains(svg, "000000010000000000000007 is missing") {
		t.Errorf("no gap drawn:\n%s", svg)
	}
	bars := string(drillBars([]DrillRow{{Started: now, Passed: true, RTOSeconds: 90, RTOTargetSeconds: 120,
		Phases: []evidence.Phase{{Name: "fetch", Seconds: 60}, {Name: "checks", Seconds: 30}}}}))
	if err := wellFormed(bars); err != nil {
		t.Fatal(err)
	}
	if strings.Count(bars, `class="phase"`) != 2 || !strings.Contains(bars, `class="target"`) {
		t.Errorf("drill bars lack phases or the target:\n%s", bars)
	}
}

// TestAccountsFile: the file is the owner's only, holds no password nor
// token in clear, and a password or code that is wrong is refused alike.
func TestAccountsFile(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/web/accounts.json"
	a := OpenAccounts(path)
	now := time.Now()
	key, err := a.AddUser("ada", Admin, "correct horse battery", now)
	if err != nil {
		t.Fatal(err)
	}
	_, token, err := a.CreateToken(Viewer, now)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("accounts file mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), "correct horse") || strings.Contains(string(raw), token) || !strings.Contains(string(raw), "$argon2id$") {
		t.Errorf("the accounts file keeps a secret in clear:\n%s", raw)
	}
	if r, _, err := a.TokenRole(token); err != nil || r != Viewer {
		t.Errorf("token: %v %v", r, err)
	}
	code, _ := totp.GenerateCode(key.Secret(), now)
	if _, err := a.check("ada", "correct horse battery", code, now); err != nil {
		t.Errorf("the right password and code: %v", err)
	}
	for _, c := range []struct{ user, pw, code string }{{"ada", "wrong", code}, {"ada", "correct horse battery", "123456"}, {"bob", "correct horse battery", code}} {
		if _, err := a.check(c.user, c.pw, c.code, now); err != errSignIn {
			t.Errorf("%+v: %v, want %v", c, err, errSignIn)
		}
	}
	if _, err := a.AddUser("ada", Viewer, "another long password", now); err == nil {
		t.Error("a second ada was created")
	}
	if _, err := a.AddUser("eve", Viewer, "short", now); err == nil {
		t.Error("a short password was taken")
	}
	if _, err := ParseRole("root"); err == nil {
		t.Error("an unknown role was taken")
	}
	if Viewer.Allows(Operator) || !Admin.Allows(Approver) || !Operator.Allows(Viewer) {
		t.Error("roles do not nest")
	}
}

// TestSessionCookieUnderTLS: behind TLS the session cookie is Secure, and
// always HttpOnly and SameSite=Strict.
func TestSessionCookieUnderTLS(t *testing.T) {
	t.Parallel()
	e := newEnvTLS(t)
	secret := addUser(t, e, "ada", Admin)
	b := newBrowser(t, e.ts.URL)
	b.c.Transport = e.ts.Client().Transport
	b.do("GET", "/signin", nil)
	code, _ := totp.GenerateCode(secret, time.Now())
	req, _ := http.NewRequestWithContext(t.Context(), "POST", e.ts.URL+"/signin", strings.NewReader(url.Values{"csrf": {b.csrf()}, "user": {"ada"},
		"password": {"correct horse battery"}, "code": {code}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var found bool
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			found = true
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.MaxAge != 3600 {
				t.Errorf("session cookie %+v: want Secure, HttpOnly, SameSite=Strict, an hour", c)
			}
		}
	}
	if !found {
		t.Errorf("no session cookie after sign-in (status %d)", resp.StatusCode)
	}
}
