package alert_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// clock is the fake Now of the state-machine tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 4, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// request is one POST a receiver took.
type request struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a local HTTP endpoint that stores what it is sent and answers
// with okStatus, or with the status set by fail. With a secret it checks
// the webhook signature as docs/alerts.md tells receivers to, and refuses
// (401) what does not verify.
type receiver struct {
	t        testing.TB
	srv      *httptest.Server
	okStatus int
	secret   string

	mu      sync.Mutex
	status  int // 0: okStatus
	body    string
	got     []request
	refused []string
}

func newReceiver(t testing.TB, okStatus int, secret string) *receiver {
	t.Helper()
	r := &receiver{t: t, okStatus: okStatus, secret: secret}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		r.refused = append(r.refused, req.Method+" "+req.Header.Get("Content-Type"))
		http.Error(w, "want POST application/json", http.StatusBadRequest)
		return
	}
	if r.secret != "" {
		if err := verifyWebhook(r.secret, req.Header, body, time.Now()); err != nil {
			r.refused = append(r.refused, err.Error())
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	r.got = append(r.got, request{Path: req.URL.Path, Header: req.Header.Clone(), Body: body})
	if r.status != 0 {
		http.Error(w, r.body, r.status)
		return
	}
	w.WriteHeader(r.okStatus)
	_, _ = io.WriteString(w, "ok")
}

// fail makes the receiver answer status with body until fail(0, "").
func (r *receiver) fail(status int, body string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.body = status, body
}

// take returns what the receiver got since the last take.
func (r *receiver) take() []request {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.refused) > 0 {
		r.t.Errorf("receiver refused requests: %q", r.refused)
		r.refused = nil
	}
	got := r.got
	r.got = nil
	return got
}

// verifyWebhook is what docs/alerts.md tells a receiver to do, written out
// independently of the sender: recompute HMAC-SHA256(secret, timestamp +
// "." + body), compare in constant time, refuse a timestamp more than five
// minutes from now.
func verifyWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	tsText := h.Get("X-Lifeboat-Timestamp")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return errors.New("bad or missing X-Lifeboat-Timestamp")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp too far from now")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(tsText + "." + string(body)))
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(h.Get("X-Lifeboat-Signature"))) {
		return errors.New("signature does not verify")
	}
	return nil
}

// webhookEvents decodes what a webhook receiver got.
func webhookEvents(t testing.TB, reqs []request) []alert.WebhookEvent {
	t.Helper()
	evs := make([]alert.WebhookEvent, len(reqs))
	for i, r := range reqs {
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&evs[i]); err != nil {
			t.Fatalf("webhook body %s: %v", r.Body, err)
		}
	}
	return evs
}

const testSecret = "whsec-test-5f4dcc3b5aa765d61d8327deb882cf99"

func webhookAlert(name, url string, repeat time.Duration) policy.Alert {
	return policy.Alert{Kind: policy.AlertWebhook, Name: name, URL: url, Secret: policy.Secret(testSecret),
		Repeat: policy.Duration(repeat)}
}

func newNotifier(t testing.TB, alerts []policy.Alert, statePath string, c *clock, log io.Writer) *alert.Notifier {
	t.Helper()
	o := alert.Options{Host: "db1.example.com", Now: c.now}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(log, nil))
	}
	n, err := alert.New(alerts, statePath, o)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var (
	staleBackup = alert.Problem{Asset: "ledger", Check: "backup", Summary: "last backup 26h ago; schedule is daily at 02:00"}
	lagCopy     = alert.Problem{Asset: "ledger", Check: "copy", Subject: "offsite", Summary: "offsite is 3h behind"}
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		p    alert.Problem
		want string
	}{
		{alert.Problem{Asset: "ledger", Check: "backup"}, "lifeboat/ledger/backup"},
		{alert.Problem{Asset: "ledger", Check: "copy", Subject: "offsite"}, "lifeboat/ledger/copy/offsite"},
		{alert.Problem{Check: "verify", Subject: "main"}, "lifeboat/_/verify/main"},
		{alert.Problem{Asset: "a/b", Check: "backup"}, "lifeboat/a%2Fb/backup"},
	} {
		if got := tc.p.Key(); got != tc.want {
			t.Errorf("%+v: key %q, want %q", tc.p, got, tc.want)
		}
		// The summary is not part of what the problem is.
		p := tc.p
		p.Summary = "changed"
		if p.Key() != tc.want {
			t.Errorf("summary changed the key of %+v", tc.p)
		}
	}
	long := alert.Problem{Asset: strings.Repeat("a", 200), Check: "backup", Subject: strings.Repeat("s", 200)}
	other := long
	other.Subject += "x"
	if k := long.Key(); len(k) > 255 || k == other.Key() || k != long.Key() {
		t.Errorf("long key %q (%d bytes) not bounded, unique and stable", k, len(k))
	}
}

// TestStateMachine follows one problem through its life at three
// destinations with different Repeat settings.
func TestStateMachine(t *testing.T) {
	hourly := newReceiver(t, http.StatusOK, testSecret)
	once := newReceiver(t, http.StatusOK, testSecret)
	c := newClock()
	start := c.now()
	statePath := filepath.Join(t.TempDir(), alert.StateFile)
	n := newNotifier(t, []policy.Alert{
		webhookAlert("hourly", hourly.srv.URL, time.Hour),
		webhookAlert("once", once.srv.URL, 0),
	}, statePath, c, nil)
	ctx := context.Background()

	update := func(ps ...alert.Problem) {
		t.Helper()
		if err := n.Update(ctx, ps); err != nil {
			t.Fatalf("update at +%s: %v", c.now().Sub(start), err)
		}
	}
	expect := func(r *receiver, status string, repeat int) {
		t.Helper()
		evs := webhookEvents(t, r.take())
		if len(evs) != 1 {
			t.Fatalf("at +%s: got %d events, want one %s: %+v", c.now().Sub(start), len(evs), status, evs)
		}
		ev := evs[0]
		if ev.Status != status || ev.Repeat != repeat || ev.Key != "lifeboat/ledger/backup" ||
			ev.Asset != "ledger" || ev.Check != "backup" || ev.Host != "db1.example.com" ||
			!ev.Since.Equal(start) || !ev.Time.Equal(c.now()) || ev.Summary == "" ||
			(status == "resolved") != ev.Resolved.Equal(c.now()) {
			t.Errorf("at +%s: event %+v, want %s repeat %d", c.now().Sub(start), ev, status, repeat)
		}
	}
	expectNone := func(rs ...*receiver) {
		t.Helper()
		for _, r := range rs {
			if got := r.take(); len(got) != 0 {
				t.Errorf("at +%s: unexpected %d sends: %s", c.now().Sub(start), len(got), got[0].Body)
			}
		}
	}

	update(staleBackup)
	expect(hourly, "firing", 0)
	expect(once, "firing", 0)

	c.add(30 * time.Minute)
	update(staleBackup)
	expectNone(hourly, once)

	c.add(30 * time.Minute) // exactly Repeat after the first send
	p := staleBackup
	p.Summary = "last backup 27h ago"
	update(p)
	expect(hourly, "firing", 1)
	expectNone(once)

	c.add(59 * time.Minute)
	update(p)
	expectNone(hourly, once)
	c.add(time.Minute)
	update(p)
	expect(hourly, "firing", 2)
	expectNone(once)

	c.add(10 * time.Minute)
	update()
	expect(hourly, "resolved", 0)
	expect(once, "resolved", 0)

	c.add(10 * time.Minute)
	update()
	expectNone(hourly, once)

	var st struct{ Problems map[string]any }
	b, err := os.ReadFile(statePath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.Problems) != 0 {
		t.Errorf("state after the resolve holds %s (err %v)", b, err)
	}

	// The same problem coming back is a new occurrence: fired again, with
	// a new since.
	c.add(time.Hour)
	start = c.now()
	update(staleBackup)
	expect(hourly, "firing", 0)
	expect(once, "firing", 0)
}

// TestFailingDestination: a destination answering 500 is named in the
// error by its name, not its URL; the others are not held up and not sent
// again; the failed trigger, and later a failed resolve, go at the next
// Update.
func TestFailingDestination(t *testing.T) {
	good := newReceiver(t, http.StatusOK, testSecret)
	bad := newReceiver(t, http.StatusOK, testSecret)
	c := newClock()
	var log bytes.Buffer
	badURL := bad.srv.URL + "/hooks/tok-7d1c0e"
	n := newNotifier(t, []policy.Alert{
		webhookAlert("good", good.srv.URL, 4*time.Hour),
		webhookAlert("ops-bad", badURL, 4*time.Hour),
	}, filepath.Join(t.TempDir(), alert.StateFile), c, &log)
	ctx := context.Background()

	bad.fail(http.StatusInternalServerError, "boom: database on fire")
	err := n.Update(ctx, []alert.Problem{staleBackup})
	if err == nil {
		t.Fatal("update with a failing destination returned no error")
	}
	msg := err.Error()
	for _, want := range []string{`alert ops-bad (webhook)`, "lifeboat/ledger/backup", "HTTP 500", "boom: database on fire"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	for _, leak := range []string{badURL, "tok-7d1c0e", testSecret} {
		if strings.Contains(msg, leak) || strings.Contains(log.String(), leak) {
			t.Errorf("error or log leaks %q: %s\n%s", leak, msg, log.String())
		}
	}
	if len(webhookEvents(t, good.take())) != 1 || len(bad.take()) != 1 {
		t.Fatal("want one attempt at each destination")
	}

	// Next check: bad is back. Only bad gets the trigger.
	bad.fail(0, "")
	c.add(time.Minute)
	if err := n.Update(ctx, []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	if got := good.take(); len(got) != 0 {
		t.Errorf("good was sent again: %s", got[0].Body)
	}
	if evs := webhookEvents(t, bad.take()); len(evs) != 1 || evs[0].Status != "firing" {
		t.Errorf("bad got %+v, want the retried trigger", evs)
	}

	// The resolve fails at bad: retried next time, good not resolved twice.
	bad.fail(http.StatusBadGateway, "")
	c.add(time.Minute)
	if err := n.Update(ctx, nil); err == nil || !strings.Contains(err.Error(), "ops-bad") {
		t.Fatalf("update with a failing resolve: %v", err)
	}
	if evs := webhookEvents(t, good.take()); len(evs) != 1 || evs[0].Status != "resolved" {
		t.Errorf("good got %+v, want a resolve", evs)
	}
	bad.take()
	bad.fail(0, "")
	resolvedAt := c.now()
	c.add(time.Minute)
	if err := n.Update(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := good.take(); len(got) != 0 {
		t.Errorf("good was resolved again: %s", got[0].Body)
	}
	// The retry tells when the problem cleared, not when the retry went.
	if evs := webhookEvents(t, bad.take()); len(evs) != 1 || evs[0].Status != "resolved" ||
		!evs[0].Resolved.Equal(resolvedAt) || !evs[0].Time.Equal(c.now()) {
		t.Errorf("bad got %+v, want the retried resolve, resolved at %s", evs, resolvedAt)
	}
}

// TestStateSurvivesRestart: a new Notifier on the same state file neither
// fires again what was sent nor forgets to resolve it.
func TestStateSurvivesRestart(t *testing.T) {
	r := newReceiver(t, http.StatusOK, testSecret)
	c := newClock()
	statePath := filepath.Join(t.TempDir(), alert.StateFile)
	alerts := []policy.Alert{webhookAlert("hook", r.srv.URL, 4*time.Hour)}
	ctx := context.Background()

	n1 := newNotifier(t, alerts, statePath, c, nil)
	if err := n1.Update(ctx, []alert.Problem{staleBackup, lagCopy}); err != nil {
		t.Fatal(err)
	}
	if got := r.take(); len(got) != 2 {
		t.Fatalf("got %d sends, want 2", len(got))
	}
	if fi, err := os.Stat(statePath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, %v", fi, err)
	}

	c.add(time.Hour)
	n2 := newNotifier(t, alerts, statePath, c, nil)
	if err := n2.Update(ctx, []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	evs := webhookEvents(t, r.take())
	if len(evs) != 1 || evs[0].Status != "resolved" || evs[0].Key != "lifeboat/ledger/copy/offsite" ||
		evs[0].Subject != "offsite" {
		t.Fatalf("after restart got %+v, want only the copy problem resolved", evs)
	}

	// Repeat counts from the send before the restart.
	c.add(3 * time.Hour)
	n3 := newNotifier(t, alerts, statePath, c, nil)
	if err := n3.Update(ctx, []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	evs = webhookEvents(t, r.take())
	if len(evs) != 1 || evs[0].Status != "firing" || evs[0].Repeat != 1 || !evs[0].Since.Equal(newClock().now()) {
		t.Fatalf("4h after the first send got %+v, want the first repeat", evs)
	}
}

func TestDamagedState(t *testing.T) {
	statePath := filepath.Join(t.TempDir(), alert.StateFile)
	if err := os.WriteFile(statePath, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := alert.New(nil, statePath, alert.Options{Host: "h"})
	if err == nil || !strings.Contains(err.Error(), statePath) || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("damaged state: %v", err)
	}
}

// TestUnreachableDestination: a destination that does not answer costs one
// timeout per Update, not one per problem, and does not delay the others.
func TestUnreachableDestination(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) })
	good := newReceiver(t, http.StatusOK, testSecret)
	c := newClock()
	n, err := alert.New([]policy.Alert{
		webhookAlert("hung", hung.URL, time.Hour),
		webhookAlert("good", good.srv.URL, time.Hour),
	}, filepath.Join(t.TempDir(), alert.StateFile), alert.Options{Host: "h", Now: c.now, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	problems := []alert.Problem{staleBackup, lagCopy, {Check: "verify", Subject: "main", Summary: "verify found 2 damaged packs"}}
	began := time.Now()
	err = n.Update(context.Background(), problems)
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), "alert hung (webhook)") ||
		!strings.Contains(err.Error(), "no answer within 300ms") || !strings.Contains(err.Error(), "2 more deferred") {
		t.Errorf("error %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("update took %s with a 300ms timeout", took)
	}
	if got := good.take(); len(got) != 3 {
		t.Errorf("good got %d sends, want 3", len(got))
	}
	t.Logf("update with a hung destination: %s", took)
}

func TestNewRefusesBadAlerts(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		a    policy.Alert
		want string
	}{
		{policy.Alert{Kind: "sms", Name: "x"}, `alert x: unknown kind "sms"`},
		{policy.Alert{Kind: policy.AlertWebhook, Name: "w", URL: "ftp://h/x"}, "alert w:"},
		{policy.Alert{Kind: policy.AlertSlack, URL: "hooks.slack.com/services/T/B/SECRETPART"}, "alert slack: webhook_url"},
		{policy.Alert{Kind: policy.AlertEmail, Name: "m", SMTP: "mail:25", TLS: "ssl", From: "a@b", To: []string{"c@d"}}, "tls must be"},
		{policy.Alert{Kind: policy.AlertEmail, Name: "m", SMTP: "mail:25", TLS: "none", From: "not an address", To: []string{"c@d"}}, "from"},
	} {
		_, err := alert.New([]policy.Alert{tc.a}, filepath.Join(dir, alert.StateFile), alert.Options{Host: "h"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.a, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRETPART") {
			t.Errorf("error leaks the URL: %v", err)
		}
	}
}
