package alert

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// maxErrorBody is how much of a refusing server's answer goes into the
// error: enough for PagerDuty's or Slack's reason, not a whole HTML page.
const maxErrorBody = 512

// poster sends JSON to one HTTP endpoint. Its errors name the endpoint by
// host only: the Slack URL is itself a secret, and a webhook URL may hold a
// token in its path or query.
type poster struct {
	client  *http.Client
	url     string
	host    string
	timeout time.Duration
	// ok says which status codes mean delivered.
	ok func(code int) bool
}

func newPoster(raw string, client *http.Client, timeout time.Duration, ok func(int) bool) (*poster, error) {
	if err := policy.CheckAlertURL(raw); err != nil {
		return nil, fmt.Errorf("url %w", err)
	}
	u, _ := url.Parse(raw)
	// A redirect is not followed: Go's client would post the body again,
	// routing key or signature included, wherever the answer points,
	// over http too.
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &poster{client: &c, url: raw, host: u.Host, timeout: timeout, ok: ok}, nil
}

func is2xx(code int) bool { return code >= 200 && code < 300 }

// statusError is an answer other than the expected one.
type statusError struct {
	Code int
	Body string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.Code, http.StatusText(e.Code))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

func (p *poster) post(ctx context.Context, body []byte, header http.Header) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post to %s: cannot build request", p.host)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lifeboat-alert")
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// *url.Error carries the whole URL; keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return unreachable(fmt.Errorf("post to %s: no answer within %s", p.host, p.timeout))
		}
		return unreachable(fmt.Errorf("post to %s: %w", p.host, err))
	}
	defer resp.Body.Close()
	if p.ok(resp.StatusCode) {
		// Read a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody+1))
	answer := oneLine(b, maxErrorBody)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		answer = "a redirect, which is not followed (the body would go again to wherever it points): give the final URL"
	}
	err = fmt.Errorf("post to %s: %w", p.host, &statusError{Code: resp.StatusCode, Body: answer})
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		return unreachable(err)
	}
	return err
}

// oneLine makes a server's answer fit in one line of a log: whitespace runs
// become one space, and it is cut at max bytes on a character boundary.
func oneLine(b []byte, max int) string {
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(b), "?")), " ")
	return truncate(s, max)
}

// truncate cuts s to at most max bytes without splitting a character,
// marking the cut with "…".
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// ---- Slack ----

// slack posts to an incoming webhook.
type slack struct{ p *poster }

func newSlack(a policy.Alert, client *http.Client, timeout time.Duration) (*slack, error) {
	p, err := newPoster(a.URL, client, timeout, is2xx)
	if err != nil {
		return nil, fmt.Errorf("webhook_url: %w", err)
	}
	return &slack{p}, nil
}

// slackEscape escapes what Slack's mrkdwn reads as markup.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackMaxSummary keeps a section well under Slack's 3000-character limit.
const slackMaxSummary = 2000

func (s *slack) send(ctx context.Context, m *message) error {
	summary := truncate(m.Problem.Summary, slackMaxSummary)
	var status, icon, detail string
	switch {
	case m.Action == resolve:
		status, icon = "RESOLVED", ":large_green_circle:"
		detail = fmt.Sprintf("was: %s\nlasted %s", summary, span(m.Resolved.Sub(m.Since)))
	case m.Repeat > 0:
		status, icon = "STILL FIRING", ":red_circle:"
		detail = fmt.Sprintf("%s\nopen for %s", summary, span(m.Time.Sub(m.Since)))
	default:
		status, icon = "FIRING", ":red_circle:"
		detail = summary
	}
	label := m.Problem.Label()
	text := fmt.Sprintf("%s %s: %s on %s: %s", icon, status, label, m.Host, summary)
	section := fmt.Sprintf("%s *%s* · *%s*\n%s", icon, status, slackEscape.Replace(label), slackEscape.Replace(detail))
	footer := fmt.Sprintf("host `%s` · since %s · key `%s`",
		slackEscape.Replace(m.Host), lifeboat.FormatTime(m.Since), slackEscape.Replace(m.Key))
	body, err := json.Marshal(map[string]any{
		"text": slackEscape.Replace(text),
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]string{"type": "mrkdwn", "text": section}},
			map[string]any{"type": "context", "elements": []any{map[string]string{"type": "mrkdwn", "text": footer}}},
		},
	})
	if err != nil {
		return fmt.Errorf("encode slack message: %w", err)
	}
	return s.p.post(ctx, body, nil)
}

// span prints a duration to the minute, as people read an incident's age:
// "45m", "4h", "3h12m".
func span(d time.Duration) string {
	d = d.Round(time.Minute)
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case d < time.Minute:
		return "less than a minute"
	case h == 0:
		return fmt.Sprintf("%dm", m)
	case m == 0:
		return fmt.Sprintf("%dh", h)
	}
	return fmt.Sprintf("%dh%dm", h, m)
}

// ---- PagerDuty ----

// pagerDuty sends Events API v2 alert events.
type pagerDuty struct {
	p   *poster
	key policy.Secret
}

func newPagerDuty(a policy.Alert, client *http.Client, timeout time.Duration) (*pagerDuty, error) {
	if a.RoutingKey == "" {
		return nil, errors.New("routing_key is required")
	}
	// The Events API answers 202 Accepted to an event it queued; 200 is
	// not one of its answers, so anything else is reported.
	p, err := newPoster(cmp.Or(a.URL, policy.DefaultPagerDutyURL), client, timeout,
		func(code int) bool { return code == http.StatusAccepted })
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	return &pagerDuty{p: p, key: a.RoutingKey}, nil
}

// pdMaxSummary is the Events API's limit on payload.summary.
const pdMaxSummary = 1024

type pdEvent struct {
	RoutingKey  string     `json:"routing_key"`
	EventAction string     `json:"event_action"`
	DedupKey    string     `json:"dedup_key"`
	Client      string     `json:"client,omitempty"`
	Payload     *pdPayload `json:"payload,omitempty"`
}

type pdPayload struct {
	Summary       string         `json:"summary"`
	Source        string         `json:"source"`
	Severity      string         `json:"severity"`
	Timestamp     string         `json:"timestamp"`
	Component     string         `json:"component,omitempty"`
	Group         string         `json:"group"`
	Class         string         `json:"class"`
	CustomDetails map[string]any `json:"custom_details"`
}

func (s *pagerDuty) send(ctx context.Context, m *message) error {
	ev := pdEvent{RoutingKey: s.key.Reveal(), EventAction: string(m.Action), DedupKey: m.Key}
	if m.Action == trigger {
		ev.Client = "lifeboat"
		details := map[string]any{
			"key":     m.Key,
			"check":   m.Problem.Check,
			"summary": m.Problem.Summary,
			"since":   m.Since.UTC().Format(time.RFC3339),
			"host":    m.Host,
		}
		if m.Problem.Asset != "" {
			details["asset"] = m.Problem.Asset
		}
		if m.Problem.Subject != "" {
			details["subject"] = m.Problem.Subject
		}
		if m.Repeat > 0 {
			details["repeat"] = m.Repeat
		}
		ev.Payload = &pdPayload{
			Summary:       truncate(m.Problem.Label()+": "+m.Problem.Summary, pdMaxSummary),
			Source:        m.Host,
			Severity:      m.Problem.severity(),
			Timestamp:     m.Time.UTC().Format(time.RFC3339),
			Component:     m.Problem.Asset,
			Group:         "lifeboat",
			Class:         m.Problem.Check,
			CustomDetails: details,
		}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode pagerduty event: %w", err)
	}
	return s.p.post(ctx, body, nil)
}

// ---- Signed webhook ----

// Headers of a signed webhook request.
const (
	HeaderTimestamp = "X-Lifeboat-Timestamp"
	HeaderSignature = "X-Lifeboat-Signature"
)

// webhook posts WebhookEvent JSON signed with HMAC-SHA256.
type webhook struct {
	p      *poster
	secret policy.Secret
}

func newWebhook(a policy.Alert, client *http.Client, timeout time.Duration) (*webhook, error) {
	if a.Secret == "" {
		return nil, errors.New("secret is required")
	}
	p, err := newPoster(a.URL, client, timeout, is2xx)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	return &webhook{p: p, secret: a.Secret}, nil
}

// WebhookEvent is the body of a webhook alert.
type WebhookEvent struct {
	Status   string    `json:"status"` // "firing" or "resolved"
	Key      string    `json:"key"`
	Asset    string    `json:"asset"`
	Check    string    `json:"check"`
	Subject  string    `json:"subject"`
	Summary  string    `json:"summary"`
	Severity string    `json:"severity"`
	Since    time.Time `json:"since"`
	Time     time.Time `json:"time"`
	Resolved time.Time `json:"resolved,omitzero"` // when the problem cleared; only when resolved
	Repeat   int       `json:"repeat"`            // 0 for the first firing, then 1, 2, ...
	Host     string    `json:"host"`
}

// sign returns the X-Lifeboat-Signature value for a body sent at the unix
// time ts: "sha256=" and the hex HMAC-SHA256, keyed with the secret, of the
// timestamp, a dot and the body. A receiver recomputes it to check the
// sender, and refuses old timestamps to stop replays.
func sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

func (s *webhook) send(ctx context.Context, m *message) error {
	ev := WebhookEvent{
		Status: "firing", Key: m.Key, Asset: m.Problem.Asset, Check: m.Problem.Check,
		Subject: m.Problem.Subject, Summary: m.Problem.Summary, Severity: m.Problem.severity(),
		Since: m.Since.UTC(), Time: m.Time.UTC(), Repeat: m.Repeat, Host: m.Host,
	}
	if m.Action == resolve {
		ev.Status, ev.Resolved = "resolved", m.Resolved.UTC()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode webhook event: %w", err)
	}
	// The signature covers the real sending time, not the injected clock:
	// the receiver compares it with its own.
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sign(s.secret.Reveal(), ts, body))
	return s.p.post(ctx, body, h)
}
