package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Message is one trigger or resolve of one problem, for a caller that keeps
// what was sent itself (the fleet's alerts table, shared by every agent)
// rather than in the Notifier's state file.
type Message struct {
	Resolve  bool
	Problem  Problem
	Key      string    // the dedup key; FleetKey for a fleet's problems
	Host     string    // the host the problem is on
	Since    time.Time // when the problem was first seen
	Resolved time.Time // for a resolve: when it cleared
	Time     time.Time // when the message is made
	Repeat   int       // 0 for the first trigger, then 1, 2, ...
}

// Destination is one alert destination of the policy, as Send names it.
type Destination struct {
	ID     string
	Repeat time.Duration // 0: a problem is sent once
}

// Destinations lists the Notifier's destinations in policy order.
func (n *Notifier) Destinations() []Destination {
	ds := make([]Destination, len(n.dests))
	for i, d := range n.dests {
		ds[i] = Destination{ID: d.id, Repeat: d.repeat}
	}
	return ds
}

// Send delivers m to the destination id now, once, without reading or
// writing the Notifier's state: deciding what to send, and remembering
// that it went, is the caller's. The error names the destination, never
// its URL or keys.
func (n *Notifier) Send(ctx context.Context, id string, m Message) error {
	for _, d := range n.dests {
		if d.id != id {
			continue
		}
		msg := message{Action: trigger, Problem: m.Problem, Key: m.Key, Since: m.Since, Time: m.Time,
			Repeat: m.Repeat, Every: d.repeat, Host: m.Host}
		if m.Resolve {
			msg.Action, msg.Resolved = resolve, m.Resolved
		}
		if err := d.s.send(ctx, &msg); err != nil {
			return fmt.Errorf("alert %s (%s): %s %s: %s", d.id, d.kind, msg.Action, m.Key, scrub(err.Error(), d.secrets))
		}
		n.log.Info("alert sent", "destination", d.id, "kind", string(d.kind), "action", string(msg.Action),
			"key", m.Key, "repeat", m.Repeat, "host", m.Host)
		return nil
	}
	return fmt.Errorf("alert destination %s is not in the policy", id)
}

// FleetKey is the dedup key of a problem of one host of a fleet:
// "lifeboat/<host>/<asset>/<check>[/<subject>]". Asset names are unique
// per host only, so the host is part of what the problem is.
func FleetKey(host string, p Problem) string {
	k := "lifeboat/" + url.PathEscape(host) + "/" + strings.TrimPrefix(p.Key(), "lifeboat/")
	if len(k) > maxKeyLen {
		sum := sha256.Sum256([]byte(k))
		k = k[:maxKeyLen-33] + "~" + hex.EncodeToString(sum[:16])
	}
	return k
}
