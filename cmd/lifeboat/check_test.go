package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/smtptest"
)

// receiver is a local HTTP endpoint playing Slack, PagerDuty and a signed
// webhook receiver; it keeps what each was sent.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret string
	mu     sync.Mutex
	got    map[string][]map[string]any
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret, got: map[string][]map[string]any{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if req.URL.Path == "/hook" {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write([]byte(req.Header.Get("X-Lifeboat-Timestamp") + "." + string(body)))
			if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(want), []byte(req.Header.Get("X-Lifeboat-Signature"))) {
				t.Errorf("webhook signature %q does not verify", req.Header.Get("X-Lifeboat-Signature"))
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Errorf("%s: body is not JSON: %s", req.URL.Path, body)
		}
		r.mu.Lock()
		r.got[req.URL.Path] = append(r.got[req.URL.Path], doc)
		r.mu.Unlock()
		if req.URL.Path == "/pd" {
			w.WriteHeader(http.StatusAccepted)
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// take returns and forgets what path received.
func (r *receiver) take(path string) []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got[path]
	delete(r.got, path)
	return out
}

func (e *env) check() (map[string]health.Result, int) {
	e.t.Helper()
	res := e.run("check", "--json", "--alert")
	var rs []health.Result
	if err := json.Unmarshal([]byte(res.stdout), &rs); err != nil {
		e.t.Fatalf("check --json: exit %d: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	out := map[string]health.Result{}
	for _, r := range rs {
		key := r.Check
		if r.Subject != "" {
			key += " " + r.Subject
		}
		out[key] = r
	}
	return out, res.code
}

// pdEvents picks the PagerDuty events of one dedup key.
func pdEvents(events []map[string]any, key string) []string {
	var actions []string
	for _, ev := range events {
		if ev["dedup_key"] == key {
			actions = append(actions, fmt.Sprint(ev["event_action"]))
		}
	}
	return actions
}

func TestCheckFindsProblemsAndAlerts(t *testing.T) {
	t.Parallel()
	e := startEnv(t, false, func(e *env) { e.assetExtra = "    schedule: \"CRON_TZ=UTC 0 3 * * *\"\n" })
	e.addFileCopy(filepath.Join(e.dir, "dr"))
	rcv := newReceiver(t, "hook-secret")
	sink := smtptest.New(t, nil)
	pdKey := testEnv(t, "TEST_PD_KEY", "pd-routing-key")
	hookSecret := testEnv(t, "TEST_HOOK_SECRET", "hook-secret")
	f, err := os.OpenFile(e.policy, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `check: { grace: 0s }
alerts:
  - kind: slack
    webhook_url: %[1]s/slack
  - kind: pagerduty
    url: %[1]s/pd
    routing_key: ${%[3]s}
  - kind: webhook
    url: %[1]s/hook
    secret: ${%[4]s}
  - kind: email
    smtp: %[2]s
    tls: none
    from: lifeboat@example.com
    to: [dba@example.com]
`, rcv.srv.URL, sink.Addr(), pdKey, hookSecret)
	f.Close()
	e.switchAndWait()

	// No backup yet: the 03:00 slot is missed.
	rs, code := e.check()
	if code != 1 || rs["backup"].OK || !strings.Contains(rs["backup"].Message, "no backup at all") {
		t.Fatalf("before any backup: exit %d, %+v", code, rs["backup"])
	}
	if slack := rcv.take("/slack"); len(slack) != 1 || !strings.Contains(fmt.Sprint(slack[0]["text"]), "db") {
		t.Errorf("slack: %v", slack)
	}
	pd := rcv.take("/pd")
	if a := pdEvents(pd, "lifeboat/db/backup"); len(a) != 1 || a[0] != "trigger" || pd[0]["routing_key"] != "pd-routing-key" {
		t.Errorf("pagerduty: %v", pd)
	}
	if hook := rcv.take("/hook"); len(hook) != 1 || hook[0]["status"] != "firing" || hook[0]["check"] != "backup" {
		t.Errorf("webhook: %v", hook)
	}
	if mails := sink.Take(); len(mails) != 1 || !strings.Contains(string(mails[0].Data), "FIRING") || mails[0].To[0] != "dba@example.com" {
		t.Errorf("email: %+v", mails)
	}
	// The problem still there: no new alert (repeat is 4h by default).
	e.check()
	if got := rcv.take("/pd"); len(got) != 0 {
		t.Errorf("a lasting problem was sent again: %v", got)
	}

	// A backup that did not reach the copy: backup resolves, copy fires.
	e.mustRun("backup", "db", "--no-copy")
	rs, code = e.check()
	if code != 1 || !rs["backup"].OK || rs["copy dr-copy"].OK || !strings.Contains(rs["copy dr-copy"].Message, "lacks 1 snapshots") {
		t.Fatalf("copy lagging: exit %d, %+v", code, rs)
	}
	pd = rcv.take("/pd")
	if a := pdEvents(pd, "lifeboat/db/backup"); len(a) != 1 || a[0] != "resolve" {
		t.Errorf("backup not resolved: %v", pd)
	}
	if a := pdEvents(pd, "lifeboat/db/copy/dr-copy"); len(a) != 1 || a[0] != "trigger" {
		t.Errorf("copy not triggered: %v", pd)
	}
	e.mustRun("copy")
	rs, code = e.check()
	if code != 0 {
		t.Fatalf("after copy: exit %d, %+v", code, rs)
	}
	if a := pdEvents(rcv.take("/pd"), "lifeboat/db/copy/dr-copy"); len(a) != 1 || a[0] != "resolve" {
		t.Errorf("copy not resolved: %v", a)
	}
	rcv.take("/slack")
	rcv.take("/hook")

	// Archiving that fails: the WAL check fails; fixed, it resolves.
	e.sql("alter system set archive_command = 'false'")
	e.sql("select pg_reload_conf()")
	e.sql("create table lag (v int); insert into lag select generate_series(1, 1000)")
	e.sql("select pg_switch_wal()")
	deadline := time.Now().Add(60 * time.Second)
	for e.sql("select failed_count from pg_stat_archiver") == "0" {
		if time.Now().After(deadline) {
			t.Fatal("the archiver never failed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	rs, code = e.check()
	if code != 1 || rs["wal_lag"].OK || !strings.Contains(rs["wal_lag"].Message, "archiving is failing") {
		t.Fatalf("failing archiver: exit %d, %+v", code, rs["wal_lag"])
	}
	if hook := rcv.take("/hook"); len(hook) != 1 || hook[0]["check"] != "wal_lag" || hook[0]["status"] != "firing" {
		t.Errorf("webhook: %v", hook)
	}
	e.sql("alter system reset archive_command")
	e.sql("select pg_reload_conf()")
	e.switchAndWait()
	e.mustRun("copy")
	rs, code = e.check()
	if code != 0 || !rs["wal_lag"].OK {
		t.Fatalf("archiving fixed: exit %d, %+v", code, rs)
	}
	if hook := rcv.take("/hook"); len(hook) != 1 || hook[0]["status"] != "resolved" {
		t.Errorf("webhook resolve: %v", hook)
	}
	var resolved int
	for _, m := range sink.Take() {
		if strings.Contains(string(m.Data), "RESOLVED") {
			resolved++
		}
	}
	if resolved == 0 {
		t.Error("no RESOLVED mail")
	}
}
