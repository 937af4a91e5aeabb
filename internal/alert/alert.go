// Package alert tells people about the problems `lifeboat check` finds: it
// sends each problem to every destination of the policy's alerts (Slack,
// PagerDuty, a signed webhook, email) once when it appears, again every
// Repeat while it lasts, and a resolve when it clears.
//
// The caller hands Update the complete set of problems open now, every time;
// the Notifier works out what changed. What it has sent is kept in a small
// JSON file in the state directory, so a daemon restarted in the middle of
// an incident neither pages again for a problem already sent nor forgets to
// resolve one that cleared while it was down.
package alert

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// StateFile is the name of the Notifier's state file in the state directory.
const StateFile = "alerts.json"

// Path returns where the Notifier of a state directory keeps its state.
func Path(stateDir string) string { return filepath.Join(stateDir, StateFile) }

// DefaultTimeout bounds one send: an HTTP request with its answer, or an
// SMTP exchange from dial to QUIT. A destination that hangs must not hold
// up the daemon's next check.
const DefaultTimeout = 15 * time.Second

// Problem is one thing check found wrong.
type Problem struct {
	// Asset is "" for a problem not tied to one asset (e.g. a
	// repository's verify).
	Asset string `json:"asset,omitempty"`
	// Check is a short stable id: "backup", "wal_lag", "copy", "drill",
	// "verify", ...
	Check string `json:"check"`
	// Subject is an optional extra key part, e.g. the repository name for
	// copy and verify problems.
	Subject string `json:"subject,omitempty"`
	// Summary is one line for humans. It may change while the problem
	// lasts (a lag that grows); a change alone sends nothing.
	Summary string `json:"summary"`
	// Severity is PagerDuty's: critical (the default), error, warning or
	// info.
	Severity string `json:"severity,omitempty"`
}

// maxKeyLen is PagerDuty's limit on dedup_key.
const maxKeyLen = 255

// Key returns the problem's dedup key, "lifeboat/<asset>/<check>" with
// "/<subject>" when there is a subject. It depends only on what the problem
// is, not on its summary, so the trigger, every repeat and the resolve of
// one problem carry the same key. A missing asset is written "_", which no
// asset name can be; each part is path-escaped so a "/" in it cannot make
// two problems share a key.
func (p Problem) Key() string {
	part := func(s string) string {
		if s == "" {
			return "_"
		}
		return url.PathEscape(s)
	}
	k := "lifeboat/" + part(p.Asset) + "/" + part(p.Check)
	if p.Subject != "" {
		k += "/" + part(p.Subject)
	}
	if len(k) > maxKeyLen {
		// Still unique and stable: a prefix people can read and a hash of
		// the whole.
		sum := sha256.Sum256([]byte(k))
		k = k[:maxKeyLen-33] + "~" + hex.EncodeToString(sum[:16])
	}
	return k
}

// Label is how the problem is named to people: asset, check and subject.
func (p Problem) Label() string {
	parts := make([]string, 0, 3)
	for _, s := range []string{p.Asset, p.Check, p.Subject} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, " ")
}

func (p Problem) severity() string {
	switch p.Severity {
	case "critical", "error", "warning", "info":
		return p.Severity
	}
	return "critical"
}

// Options are what a Notifier needs besides the policy.
type Options struct {
	// Host names this machine in every alert; default os.Hostname.
	Host string
	// Log receives one line per alert sent; default discards.
	Log *slog.Logger
	// HTTPClient sends Slack, PagerDuty and webhook alerts; default a
	// plain client. Each request is bounded by Timeout whatever the
	// client's own settings.
	HTTPClient *http.Client
	// TLSConfig is the base TLS configuration for SMTP (e.g. RootCAs);
	// nil trusts the system roots. ServerName is always set to the
	// SMTP host.
	TLSConfig *tls.Config
	// Timeout bounds each send; default DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Notifier sends problems to the policy's alert destinations and remembers
// what it has sent. Its methods may be called from several goroutines.
type Notifier struct {
	dests     []*destination
	statePath string
	host      string
	log       *slog.Logger
	now       func() time.Time

	mu    sync.Mutex
	state *state
}

// destination is one policy.Alert with its sender.
type destination struct {
	id     string // unique among the Notifier's destinations; the state's key
	kind   policy.AlertKind
	repeat time.Duration // 0: never repeat
	s      sender
	// secrets are scrubbed from every error this destination returns, in
	// case a server or a library echoes them.
	secrets []string
}

// sender delivers one message to one destination. Errors that mean the
// destination cannot be reached at all (as opposed to one message being
// refused) are wrapped by unreachable, so the Notifier stops sending to it
// for the rest of the Update instead of waiting out a timeout per problem.
type sender interface {
	send(ctx context.Context, m *message) error
}

// action is what a message asks of the destination.
type action string

const (
	trigger action = "trigger"
	resolve action = "resolve"
)

// message is one trigger or resolve of one problem, as the senders see it.
type message struct {
	Action   action
	Problem  Problem
	Key      string
	Since    time.Time // when the problem was first seen
	Resolved time.Time // for a resolve: when the problem left the set
	Time     time.Time // now: when the message was made
	Repeat   int       // sends of this problem to this destination before this one
	Every    time.Duration
	Host     string
}

// New builds one sender per alert and loads the state at statePath (a
// missing file is an empty state). An alert that cannot be used, such as an
// unknown kind or a bad address, is an error naming it.
func New(alerts []policy.Alert, statePath string, o Options) (*Notifier, error) {
	var unresolved []error
	for _, a := range alerts {
		for _, u := range a.Unresolved {
			unresolved = append(unresolved, errors.New(u))
		}
	}
	if len(unresolved) > 0 {
		return nil, fmt.Errorf("alerts cannot be sent: %w", errors.Join(unresolved...))
	}
	n := &Notifier{statePath: statePath, host: o.Host, log: o.Log, now: o.Now}
	if n.host == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("alerts: host name: %w", err)
		}
		n.host = h
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	timeout := cmp.Or(o.Timeout, DefaultTimeout)
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	seen := map[string]int{}
	for _, a := range alerts {
		name := cmp.Or(a.Name, string(a.Kind))
		// Two alerts of one kind without names both default to the kind;
		// the state must still tell them apart.
		seen[name]++
		id := name
		if seen[name] > 1 {
			id = fmt.Sprintf("%s#%d", name, seen[name])
		}
		d := &destination{id: id, kind: a.Kind, repeat: a.Repeat.Std()}
		var err error
		switch a.Kind {
		case policy.AlertSlack:
			d.s, err = newSlack(a, client, timeout)
			d.secrets = urlSecrets(a.URL)
		case policy.AlertPagerDuty:
			d.s, err = newPagerDuty(a, client, timeout)
			d.secrets = []string{a.RoutingKey.Reveal()}
		case policy.AlertWebhook:
			d.s, err = newWebhook(a, client, timeout)
			// Not a secret by the policy, but webhook services often
			// carry a token in the URL.
			d.secrets = append(urlSecrets(a.URL), a.Secret.Reveal())
		case policy.AlertEmail:
			d.s, err = newEmail(a, o.TLSConfig, timeout)
			d.secrets = []string{a.Password.Reveal()}
		default:
			err = fmt.Errorf("unknown kind %q (known: slack, pagerduty, webhook, email)", a.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("alert %s: %s", id, scrub(err.Error(), d.secrets))
		}
		n.dests = append(n.dests, d)
	}
	st, err := loadState(statePath)
	if err != nil {
		return nil, err
	}
	n.state = st
	return n, nil
}

// urlSecrets lists what of a URL must not be shown: the whole URL and its
// path and query, where Slack and most webhook services put the token. A
// part too short to be a token ("/alerts") is left readable.
func urlSecrets(raw string) []string {
	s := []string{raw}
	if u, err := url.Parse(raw); err == nil {
		for _, part := range []string{u.Path, u.EscapedPath(), u.RawQuery} {
			if len(part) >= 12 {
				s = append(s, part)
			}
		}
	}
	return s
}

// job is one message for one destination, and what to record if it goes.
type job struct {
	key string
	m   message
	err error
}

// Update is given the complete set of problems open now. A new problem is
// sent to every destination; one still open is sent again to a destination
// whose Repeat has passed since it last got it (Repeat 0: never); one no
// longer in the set is resolved at every destination that got it. A send
// that fails is not recorded, so it is tried again at the next Update; one
// destination failing does not stop the others. The state is written
// durably before Update returns. The error joins every failure, each naming
// the destination by its name, never its URL or keys.
func (n *Notifier) Update(ctx context.Context, problems []Problem) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.now()

	jobs := n.plan(now, problems)
	var wg sync.WaitGroup
	for d, js := range jobs {
		wg.Go(func() { n.deliver(ctx, d, js) })
	}
	wg.Wait()

	errs := n.record(now, jobs)
	if err := saveState(n.statePath, n.state); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// plan brings the state up to date with the problems open now and returns
// what each destination is to be sent: resolves first (telling people a
// problem is over is as urgent as a new one), then triggers, each in key
// order.
func (n *Notifier) plan(now time.Time, problems []Problem) map[*destination][]*job {
	open := make(map[string]Problem, len(problems))
	for _, p := range problems {
		open[p.Key()] = p
	}
	for key, p := range open {
		ps := n.state.Problems[key]
		if ps == nil {
			ps = &problemState{Since: now}
			n.state.Problems[key] = ps
		} else if !ps.Open {
			// Back before every destination heard it was resolved: the
			// ones still holding it open simply carry on.
			ps.ResolvedAt = time.Time{}
		}
		ps.Open = true
		ps.Problem = p
	}

	byID := make(map[string]*destination, len(n.dests))
	for _, d := range n.dests {
		byID[d.id] = d
	}
	jobs := make(map[*destination][]*job, len(n.dests))
	for _, key := range slices.Sorted(maps.Keys(n.state.Problems)) {
		ps := n.state.Problems[key]
		if _, ok := open[key]; !ok && ps.Open {
			ps.Open = false
			ps.ResolvedAt = now
		}
		for id := range ps.Sent {
			if byID[id] == nil {
				// The destination left the policy; nobody is left to
				// resolve it at.
				n.log.Warn("alert destination gone from the policy; forgetting what was sent to it",
					"destination", id, "key", key)
				delete(ps.Sent, id)
			}
		}
		for _, d := range n.dests {
			sent, got := ps.Sent[d.id]
			m := message{Problem: ps.Problem, Key: key, Since: ps.Since, Time: now, Host: n.host, Every: d.repeat}
			switch {
			case !ps.Open && got:
				m.Action, m.Resolved = resolve, ps.ResolvedAt
			case !ps.Open:
				continue
			case !got:
				m.Action = trigger
			case d.repeat > 0 && now.Sub(sent.At) >= d.repeat:
				m.Action, m.Repeat = trigger, sent.Count
			default:
				continue
			}
			jobs[d] = append(jobs[d], &job{key: key, m: m})
		}
	}
	for _, js := range jobs {
		slices.SortStableFunc(js, func(a, b *job) int {
			return cmp.Compare(actionOrder(a.m.Action), actionOrder(b.m.Action))
		})
	}
	return jobs
}

// record notes in the state what was delivered, drops the problems that
// are resolved everywhere, and returns the failures.
func (n *Notifier) record(now time.Time, jobs map[*destination][]*job) []error {
	var errs []error
	for _, d := range n.dests {
		for _, j := range jobs[d] {
			ps := n.state.Problems[j.key]
			switch {
			case j.err == errDeferred:
				// Counted in the error of the send that found the
				// destination down.
			case j.err != nil:
				errs = append(errs, j.err)
			case j.m.Action == trigger:
				if ps.Sent == nil {
					ps.Sent = map[string]sentState{}
				}
				ps.Sent[d.id] = sentState{At: now, Count: j.m.Repeat + 1}
			default:
				delete(ps.Sent, d.id)
			}
		}
	}
	for key, ps := range n.state.Problems {
		if !ps.Open && len(ps.Sent) == 0 {
			delete(n.state.Problems, key)
		}
	}
	return errs
}

func actionOrder(a action) int {
	if a == resolve {
		return 0
	}
	return 1
}

// deliver sends one destination's jobs in order, recording each one's
// error. Once the destination proves unreachable the rest wait for the
// next Update: a dead server costs one timeout, not one per problem.
func (n *Notifier) deliver(ctx context.Context, d *destination, js []*job) {
	for i, j := range js {
		err := d.s.send(ctx, &j.m)
		if err == nil {
			n.log.Info("alert sent", "destination", d.id, "kind", string(d.kind),
				"action", string(j.m.Action), "key", j.key, "repeat", j.m.Repeat)
			continue
		}
		what := fmt.Sprintf("alert %s (%s): %s %s", d.id, d.kind, j.m.Action, j.key)
		var down *unreachableError
		if errors.As(err, &down) && i+1 < len(js) {
			j.err = fmt.Errorf("%s: %s (%d more deferred to the next update)", what,
				scrub(err.Error(), d.secrets), len(js)-i-1)
			for _, rest := range js[i+1:] {
				rest.err = errDeferred
			}
			return
		}
		j.err = fmt.Errorf("%s: %s", what, scrub(err.Error(), d.secrets))
	}
}

// errDeferred marks a job not tried because its destination was down; it
// is counted in the error of the job that found it down.
var errDeferred = errors.New("deferred: destination unreachable")

// unreachableError marks an error that will fail every message to the
// destination alike (a refused connection, a timeout, a 5xx or 429).
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

func unreachable(err error) error { return &unreachableError{err} }

// redacted stands in for a secret in an error message, as policy.Secret
// prints itself.
const redacted = "**redacted**"

// scrub removes every secret from s. The senders never put a secret in an
// error; this catches a server or library that echoes one back.
func scrub(s string, secrets []string) string {
	// Longest first, so a secret that contains another goes whole.
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

// Problems are the failing results of a health check, as alerts.
func Problems(rs []health.Result) []Problem {
	var out []Problem
	for _, r := range rs {
		if !r.OK {
			out = append(out, Problem{Asset: r.Asset, Check: r.Check, Subject: r.Subject, Summary: r.Message})
		}
	}
	return out
}
