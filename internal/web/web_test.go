package web

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/audit"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// get calls the API with a bearer token and decodes the answer.
func (e *env) get(t *testing.T, token, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.ts.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

func (e *env) token(t *testing.T, role Role) string {
	t.Helper()
	_, token, err := e.srv.Accounts().CreateToken(role, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// TestOverviewStates: after a backup, a failed drill and a copy that
// lags, GET /api/assets gives each asset its state, and its numbers are
// the ones status and check give.
func TestOverviewStates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.token(t, Viewer)
	var rows []AssetRow
	if code := e.get(t, token, "/api/assets", &rows); code != http.StatusOK {
		t.Fatalf("GET /api/assets: %d", code)
	}
	want := map[string]string{"notes": StateOK, "docs": StateWarning, "ledger": StateFailing, "spare": StateFailing}
	if len(rows) != len(want) {
		t.Fatalf("%d assets, want %d: %+v", len(rows), len(want), rows)
	}
	status, _, err := e.svc.Status(t.Context(), nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_ = status
	for _, r := range rows {
		if r.State != want[r.Name] {
			t.Errorf("%s: state %s (%v), want %s", r.Name, r.State, r.Why, want[r.Name])
		}
		if r.Host != host() {
			t.Errorf("%s: host %q, want %q", r.Name, r.Host, host())
		}
		a, err := e.svc.Policy.Asset(r.Name)
		if err != nil {
			t.Fatal(err)
		}
		rs, _, err := e.svc.Status(t.Context(), []*policy.Asset{a}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !r.LastBackup.Equal(rs[0].LastSnapshotTime) {
			t.Errorf("%s: last_backup %v, status says %v", r.Name, r.LastBackup, rs[0].LastSnapshotTime)
		}
		if target := time.Duration(e.svc.Policy.Tiers[a.Tier].RPO).Seconds(); r.RPOTargetSeconds != target {
			t.Errorf("%s: rpo_target_seconds %v, want %v", r.Name, r.RPOTargetSeconds, target)
		}
		switch r.Name {
		case "spare":
			if r.RPOSeconds != nil || !strings.Contains(strings.Join(r.Why, ";"), "no backup") {
				t.Errorf("spare: rpo %v, why %v; want none, no backup", r.RPOSeconds, r.Why)
			}
		default:
			if r.RPOSeconds == nil || *r.RPOSeconds < 0 || *r.RPOSeconds > 600 {
				t.Errorf("%s: rpo_seconds %v, want the seconds since its backup", r.Name, r.RPOSeconds)
			}
		}
	}
	byName := map[string]AssetRow{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if d := byName["ledger"].LastDrill; d == nil || d.Passed || !strings.Contains(d.Error, "all entries") {
		t.Errorf("ledger: last drill %+v, want the failed one naming its check", d)
	}
	if c := byName["docs"].Copies; len(c) != 1 || c[0].Lag == nil || c[0].Lag.Snapshots != 1 {
		t.Errorf("docs: copies %+v, want offsite lacking 1 snapshot", c)
	}
	// The failing checks are check's: the same results, message for message.
	results, err := e.svc.Health(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	failing := map[string][]string{}
	for _, r := range results {
		if !r.OK && r.Asset != "" {
			failing[r.Asset] = append(failing[r.Asset], r.Check)
		}
	}
	for _, r := range rows {
		var got []string
		for _, a := range r.Alerts {
			got = append(got, a.Check)
		}
		if strings.Join(got, ",") != strings.Join(failing[r.Name], ",") {
			t.Errorf("%s: alerts %v, check fails %v", r.Name, got, failing[r.Name])
		}
	}

	// Filters by state and tier.
	var failingRows []AssetRow
	e.get(t, token, "/api/assets?state=failing", &failingRows)
	if len(failingRows) != 2 {
		t.Errorf("state=failing: %d assets, want 2", len(failingRows))
	}
	var silver []AssetRow
	e.get(t, token, "/api/assets?tier=silver&kind=files", &silver)
	if len(silver) != 2 {
		t.Errorf("tier=silver&kind=files: %d assets, want 2", len(silver))
	}

	// The asset's own document: the snapshots info lists.
	var d AssetDetail
	if code := e.get(t, token, "/api/assets/"+host()+"/docs", &d); code != http.StatusOK {
		t.Fatalf("GET asset: %d", code)
	}
	if len(d.Info.Repositories) != 2 || len(d.Info.Repositories[0].Snapshots) != 1 || len(d.Commands) == 0 {
		t.Errorf("docs detail: %+v", d)
	}
	if code := e.get(t, token, "/api/assets/"+host()+"/nosuch", nil); code != http.StatusNotFound {
		t.Errorf("unknown asset: %d, want 404", code)
	}
	if code := e.get(t, token, "/api/assets/other-host/docs", nil); code != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", code)
	}
	if code := e.get(t, "lbt_wrong", "/api/assets", nil); code != http.StatusUnauthorized {
		t.Errorf("a wrong token: %d, want 401", code)
	}
}

// browser is a client with cookies that does not follow redirects.
type browser struct {
	t      *testing.T
	c      *http.Client
	base   string
	status int
	body   string
	// location is the last answer's Location header.
	location string
}

func newBrowser(t *testing.T, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values) *browser {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequestWithContext(b.t.Context(), method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	b.status, b.body, b.location = resp.StatusCode, string(raw), resp.Header.Get("Location")
	return b
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf() string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(b.body)
	if m == nil {
		b.t.Fatalf("no CSRF token in the page:\n%s", b.body)
	}
	return m[1]
}

func (b *browser) signIn(user, password, secret string) int {
	b.t.Helper()
	b.do("GET", "/signin", nil)
	code, err := totp.GenerateCode(secret, time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	return b.do("POST", "/signin", url.Values{"csrf": {b.csrf()}, "user": {user}, "password": {password}, "code": {code}}).status
}

func addUser(t *testing.T, e *env, name string, role Role) string {
	t.Helper()
	key, err := e.srv.Accounts().AddUser(name, role, "correct horse battery", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return key.Secret()
}

// TestSignInRolesAndCSRF: a local account signs in with its password and
// TOTP code; a viewer cannot back up; a POST without the session's CSRF
// token is refused; an operator backs up from the browser. Every sign-in
// and refusal is an audit event with the client's address.
func TestSignInRolesAndCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	viewer := newBrowser(t, e.ts.URL)
	if viewer.do("GET", "/", nil).status != http.StatusSeeOther {
		t.Fatalf("a page without a session: %d, want a redirect to /signin", viewer.status)
	}
	vSecret := addUser(t, e, "vera", Viewer)
	if code := viewer.signIn("vera", "correct horse battery", vSecret); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d\n%s", code, viewer.body)
	}
	viewer.do("GET", "/", nil)
	for _, name := range []string{"notes", "docs", "ledger", "spare"} {
		if !strings.Contains(viewer.body, `data-asset="`+name+`"`) {
			t.Errorf("the overview lacks %s", name)
		}
	}
	if strings.Contains(viewer.do("GET", "/assets/"+host()+"/docs", nil).body, "Back up now") {
		t.Error("a viewer is offered the backup button")
	}
	csrf := viewer.csrf()
	if viewer.do("POST", "/assets/"+host()+"/docs/backup", url.Values{"csrf": {csrf}}).status != http.StatusForbidden {
		t.Errorf("a viewer's backup: %d, want 403", viewer.status)
	}

	operator := newBrowser(t, e.ts.URL)
	oSecret := addUser(t, e, "olga", Operator)
	if code := operator.signIn("olga", "correct horse battery", oSecret); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", code)
	}
	if operator.do("POST", "/assets/"+host()+"/notes/backup", url.Values{}).status != http.StatusForbidden ||
		!strings.Contains(operator.body, "CSRF") {
		t.Errorf("a POST without the CSRF token: %d, want 403 naming it", operator.status)
	}
	before, err := e.svc.Snapshots(t.Context(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	page := operator.do("GET", "/assets/"+host()+"/notes", nil)
	if !strings.Contains(page.body, "Back up now") {
		t.Fatal("an operator is not offered the backup button")
	}
	if operator.do("POST", "/assets/"+host()+"/notes/backup", url.Values{"csrf": {operator.csrf()}}).status != http.StatusSeeOther {
		t.Fatalf("an operator's backup: %d %s", operator.status, operator.body)
	}
	after, err := e.svc.Snapshots(t.Context(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before)+1 {
		t.Errorf("snapshots of notes: %d before, %d after the backup", len(before), len(after))
	}

	// Wrong codes: refused alike, then refused outright.
	guesser := newBrowser(t, e.ts.URL)
	for i := range 5 {
		guesser.do("GET", "/signin", nil)
		guesser.do("POST", "/signin", url.Values{"csrf": {guesser.csrf()}, "user": {"vera"}, "password": {"correct horse battery"}, "code": {"000000"}})
		if guesser.status != http.StatusUnauthorized {
			t.Fatalf("wrong code %d: %d", i, guesser.status)
		}
	}
	if code := guesser.signIn("vera", "correct horse battery", vSecret); code != http.StatusTooManyRequests {
		t.Errorf("after 5 failures: %d, want 429", code)
	}
	// A sign-in form without its CSRF token.
	if newBrowser(t, e.ts.URL).do("POST", "/signin", url.Values{"user": {"vera"}}).status != http.StatusForbidden {
		t.Error("a sign-in without the form's token was not refused")
	}

	var signIns, refused int
	err = e.svc.AuditEvents(t.Context(), app.AuditFilter{}, func(_ *audit.Record, ev *audit.Event) error {
		if ev.Type == AuditSignIn {
			if ev.Details["client"] != "127.0.0.1" {
				return errors.New("sign-in event without the client address: " + ev.Details["client"])
			}
			if ev.Outcome == audit.OK {
				signIns++
			} else {
				refused++
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if signIns != 2 || refused != 6 {
		t.Errorf("audit: %d sign-ins and %d refusals, want 2 and 6", signIns, refused)
	}
}

// TestPagesWellFormed: every page is well-formed (parsed as XML, as the
// DR report is), every visible form field has a label, and the overview
// shows the numbers the API gives.
func TestPagesWellFormed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t, e.ts.URL)
	if code := b.signIn("ada", "correct horse battery", addUser(t, e, "ada", Admin)); code != http.StatusSeeOther {
		t.Fatalf("sign in: %d", code)
	}
	out := artifacts(t)
	for _, path := range []string{"/", "/?state=failing", "/assets/" + host() + "/docs", "/assets/" + host() + "/ledger",
		"/drills", "/report", "/approvals", "/audit", "/audit?type=web-sign-in", "/account", "/signin"} {
		b.do("GET", path, nil)
		if b.status != http.StatusOK {
			t.Errorf("GET %s: %d", path, b.status)
			continue
		}
		name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(path, "-"), "-")
		os.WriteFile(filepath.Join(out, "page-"+name+".html"), []byte(b.body), 0o644)
		if err := wellFormed(b.body); err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
	}
	b.do("GET", "/", nil)
	token := e.token(t, Viewer)
	var rows []AssetRow
	e.get(t, token, "/api/assets", &rows)
	for _, r := range rows {
		if r.RPOSeconds == nil {
			continue
		}
		row := regexp.MustCompile(`(?s)data-asset="` + r.Name + `".*?</tr>`).FindString(b.body)
		if !strings.Contains(row, ">"+r.State+"<") || !strings.Contains(row, "/ "+seconds(r.RPOTargetSeconds)) {
			t.Errorf("%s: the overview row does not show state %s and target %s:\n%s", r.Name, r.State, seconds(r.RPOTargetSeconds), row)
		}
	}
}

// artifacts is where pages and screenshots go: $LIFEBOAT_TEST_ARTIFACTS
// when set, else the test's temporary directory.
func artifacts(t *testing.T) string {
	if dir := os.Getenv("LIFEBOAT_TEST_ARTIFACTS"); dir != "" {
		d := filepath.Join(dir, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// wellFormed parses the page as XML (every element closed, attributes
// quoted, entities known) and checks that every field a person fills in
// has a label naming it.
func wellFormed(page string) error {
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = true
	d.Entity = xml.HTMLEntity
	labels := map[string]bool{}
	var fields []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		attr := func(name string) string {
			for _, a := range se.Attr {
				if a.Name.Local == name {
					return a.Value
				}
			}
			return ""
		}
		switch se.Name.Local {
		case "label":
			labels[attr("for")] = true
		case "input", "select", "textarea":
			if attr("type") != "hidden" {
				fields = append(fields, attr("id")+" ("+attr("name")+")")
				if attr("id") == "" {
					return errors.New("a form field without an id: " + attr("name"))
				}
			}
		}
	}
	for _, f := range fields {
		id, _, _ := strings.Cut(f, " ")
		if !labels[id] {
			return errors.New("no label for the form field " + f)
		}
	}
	return nil
}

var _ = health.CheckCopy
