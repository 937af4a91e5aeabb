package alert_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

const routingKey = "R0UT1NGKEY0123456789abcdef012345"

// pdEvent is the Events API v2 body as PagerDuty reads it.
type pdEvent struct {
	RoutingKey  string `json:"routing_key"`
	EventAction string `json:"event_action"`
	DedupKey    string `json:"dedup_key"`
	Client      string `json:"client"`
	Payload     *struct {
		Summary       string         `json:"summary"`
		Source        string         `json:"source"`
		Severity      string         `json:"severity"`
		Timestamp     string         `json:"timestamp"`
		Component     string         `json:"component"`
		Group         string         `json:"group"`
		Class         string         `json:"class"`
		CustomDetails map[string]any `json:"custom_details"`
	} `json:"payload"`
}

// TestSlackAndPagerDuty sends one problem through trigger, repeat and
// resolve to a Slack and a PagerDuty receiver and checks the payloads.
func TestSlackAndPagerDuty(t *testing.T) {
	slack := newReceiver(t, http.StatusOK, "")
	pd := newReceiver(t, http.StatusAccepted, "")
	c := newClock()
	slackURL := slack.srv.URL + "/services/T0001/B0002/xoxSecretPath"
	n := newNotifier(t, []policy.Alert{
		{Kind: policy.AlertSlack, Name: "slack", URL: slackURL, Repeat: policy.Duration(time.Hour)},
		{Kind: policy.AlertPagerDuty, Name: "pd", URL: pd.srv.URL + "/v2/enqueue", RoutingKey: routingKey, Repeat: policy.Duration(time.Hour)},
	}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	ctx := context.Background()

	var slackTexts []string
	var pdEvents []pdEvent
	collect := func() {
		t.Helper()
		for _, r := range slack.take() {
			if r.Path != "/services/T0001/B0002/xoxSecretPath" {
				t.Errorf("slack posted to %s", r.Path)
			}
			var m struct {
				Text   string `json:"text"`
				Blocks []struct {
					Type     string `json:"type"`
					Text     *struct{ Type, Text string }
					Elements []struct{ Type, Text string }
				} `json:"blocks"`
			}
			if err := json.Unmarshal(r.Body, &m); err != nil {
				t.Fatalf("slack body %s: %v", r.Body, err)
			}
			if len(m.Blocks) != 2 || m.Blocks[0].Type != "section" || m.Blocks[0].Text == nil ||
				m.Blocks[0].Text.Type != "mrkdwn" || m.Blocks[1].Type != "context" || len(m.Blocks[1].Elements) != 1 {
				t.Errorf("slack blocks: %s", r.Body)
			}
			slackTexts = append(slackTexts, m.Text+"\n"+m.Blocks[0].Text.Text+"\n"+m.Blocks[1].Elements[0].Text)
		}
		for _, r := range pd.take() {
			var ev pdEvent
			dec := json.NewDecoder(bytes.NewReader(r.Body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("pagerduty body %s: %v", r.Body, err)
			}
			if r.Path != "/v2/enqueue" {
				t.Errorf("pagerduty posted to %s", r.Path)
			}
			if ev.EventAction == "resolve" {
				// A resolve carries nothing but the three fields.
				var raw map[string]any
				_ = json.Unmarshal(r.Body, &raw)
				if len(raw) != 3 {
					t.Errorf("resolve body has more than routing_key, event_action, dedup_key: %s", r.Body)
				}
			}
			pdEvents = append(pdEvents, ev)
		}
	}

	p := alert.Problem{Asset: "ledger", Check: "wal_lag", Summary: "WAL archive lag 9m > RPO 5m (tier critical)"}
	if err := n.Update(ctx, []alert.Problem{p}); err != nil {
		t.Fatal(err)
	}
	c.add(time.Hour)
	if err := n.Update(ctx, []alert.Problem{p}); err != nil {
		t.Fatal(err)
	}
	c.add(5 * time.Minute)
	if err := n.Update(ctx, nil); err != nil {
		t.Fatal(err)
	}
	collect()

	if len(slackTexts) != 3 {
		t.Fatalf("slack got %d messages, want trigger, repeat, resolve: %q", len(slackTexts), slackTexts)
	}
	for i, want := range [][]string{
		{"FIRING", "ledger wal_lag", "WAL archive lag 9m &gt; RPO 5m", "db1.example.com", "lifeboat/ledger/wal_lag"},
		{"STILL FIRING", "open for 1h"},
		{"RESOLVED", "lasted 1h5m", "was: WAL archive lag"},
	} {
		for _, w := range want {
			if !strings.Contains(slackTexts[i], w) {
				t.Errorf("slack message %d lacks %q:\n%s", i, w, slackTexts[i])
			}
		}
	}
	if strings.Contains(slackTexts[0], "RESOLVED") || strings.Contains(slackTexts[2], "FIRING") {
		t.Errorf("firing and resolved mixed up: %q", slackTexts)
	}

	if len(pdEvents) != 3 {
		t.Fatalf("pagerduty got %d events, want 3", len(pdEvents))
	}
	for i, want := range []string{"trigger", "trigger", "resolve"} {
		ev := pdEvents[i]
		if ev.EventAction != want || ev.RoutingKey != routingKey || ev.DedupKey != "lifeboat/ledger/wal_lag" {
			t.Errorf("event %d: %s %q %q, want %s with the stable dedup key", i, ev.EventAction, ev.RoutingKey, ev.DedupKey, want)
		}
		if want == "resolve" {
			if ev.Payload != nil {
				t.Errorf("resolve has a payload")
			}
			continue
		}
		pl := ev.Payload
		if pl == nil {
			t.Fatalf("trigger %d has no payload", i)
		}
		if pl.Summary != "ledger wal_lag: "+p.Summary || pl.Source != "db1.example.com" || pl.Severity != "critical" ||
			pl.Component != "ledger" || pl.Class != "wal_lag" || pl.Group != "lifeboat" ||
			pl.CustomDetails["key"] != "lifeboat/ledger/wal_lag" || pl.CustomDetails["asset"] != "ledger" {
			t.Errorf("trigger %d payload %+v", i, pl)
		}
		if ts, err := time.Parse(time.RFC3339, pl.Timestamp); err != nil || !ts.Equal(c.now().Add(time.Duration(i-1)*time.Hour-5*time.Minute)) {
			t.Errorf("trigger %d timestamp %q", i, pl.Timestamp)
		}
	}
	if pdEvents[1].Payload.CustomDetails["repeat"] != 1.0 {
		t.Errorf("repeat not marked: %+v", pdEvents[1].Payload.CustomDetails)
	}
}

// TestSecretsStayOut: a Slack URL, a routing key and a webhook secret never
// appear in errors or logs, even when the server echoes them.
func TestSecretsStayOut(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b bytes.Buffer
		_, _ = b.ReadFrom(r.Body)
		// A misbehaving server repeating the request back.
		http.Error(w, r.URL.String()+" "+b.String(), http.StatusBadRequest)
	}))
	t.Cleanup(echo.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/services/T1/B2/deadSlackToken"
	dead.Close() // connection refused from now on

	var log bytes.Buffer
	n := newNotifier(t, []policy.Alert{
		{Kind: policy.AlertSlack, Name: "slack-echo", URL: echo.URL + "/services/T1/B2/echoSlackToken"},
		{Kind: policy.AlertSlack, Name: "slack-dead", URL: deadURL},
		{Kind: policy.AlertPagerDuty, Name: "pd", URL: echo.URL + "/v2/enqueue", RoutingKey: routingKey},
		webhookAlert("hook", echo.URL+"/hook?token=queryToken", time.Hour),
	}, filepath.Join(t.TempDir(), alert.StateFile), newClock(), &log)
	err := n.Update(context.Background(), []alert.Problem{staleBackup})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, name := range []string{"slack-echo (slack)", "slack-dead (slack)", "pd (pagerduty)", "hook (webhook)", "HTTP 400", "**redacted**"} {
		if !strings.Contains(msg, name) {
			t.Errorf("error lacks %q: %s", name, msg)
		}
	}
	for _, secret := range []string{"echoSlackToken", "deadSlackToken", routingKey, "queryToken", testSecret} {
		if strings.Contains(msg, secret) || strings.Contains(log.String(), secret) {
			t.Errorf("secret %q leaked:\n%s\n%s", secret, msg, log.String())
		}
	}
	t.Logf("error: %s", msg)
}
