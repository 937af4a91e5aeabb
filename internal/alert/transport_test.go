package alert_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// TestAlertURLMustBeHTTPS: plain http is refused unless it stays on this
// host's loopback; the refusal never quotes the URL, which may be the
// secret.
func TestAlertURLMustBeHTTPS(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://hooks.slack.com/services/T0/B0/xoxSecretPath", true},
		{"http://127.0.0.1:9000/hook", true},
		{"http://[::1]:9000/hook", true},
		{"http://localhost/hook", true},
		{"http://hooks.slack.com/services/T0/B0/xoxSecretPath", false},
		{"http://10.0.0.5/hook", false},
		{"ftp://example.com/hook", false},
	} {
		_, err := alert.New([]policy.Alert{{Kind: policy.AlertSlack, Name: "s", URL: tc.url}},
			filepath.Join(t.TempDir(), alert.StateFile), alert.Options{Host: "h"})
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.url, err)
		}
		if err != nil && (strings.Contains(err.Error(), "xoxSecretPath") || !strings.Contains(err.Error(), "https")) {
			t.Errorf("%s: %v", tc.url, err)
		}
		if perr := policy.CheckAlertURL(tc.url); (perr == nil) != tc.ok {
			t.Errorf("policy.CheckAlertURL(%s): %v", tc.url, perr)
		}
	}
}

// TestAlertRedirectNotFollowed: an endpoint that redirects does not get
// the body sent on to where it points, routing key and all; the failure
// says why.
func TestAlertRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newReceiver(t, http.StatusAccepted, "")
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL+"/v2/enqueue", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	var log strings.Builder
	n := newNotifier(t, []policy.Alert{{Kind: policy.AlertPagerDuty, Name: "pd", URL: redirector.URL + "/v2/enqueue",
		RoutingKey: routingKey, Repeat: policy.Duration(time.Hour)}}, filepath.Join(t.TempDir(), alert.StateFile), newClock(), &log)
	err := n.Update(t.Context(), []alert.Problem{staleBackup})
	if got := elsewhere.take(); len(got) != 0 {
		t.Fatalf("the redirect was followed: %d requests reached its target", len(got))
	}
	msg := log.String()
	if err != nil {
		msg += err.Error()
	}
	if !strings.Contains(msg, "307") || !strings.Contains(msg, "not followed") || strings.Contains(msg, routingKey) {
		t.Fatalf("delivery through a redirect: %v\nlog: %s", err, log.String())
	}
}
