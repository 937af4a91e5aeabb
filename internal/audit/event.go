// Package audit is Lifeboat's tamper-evident record of who did what: one
// Event per action (backup, restore, drill, verify, expire and each
// deletion it makes, copy, pin, key changes, repository creation, policy
// reloads, a minute of WAL archiving), chained by hash so that a deleted,
// edited or reordered event breaks the chain, and sealed into the
// repositories the action used so that a host whose local record was
// rewritten or rolled back is caught from the repository alone.
//
// The package knows no storage: the application service keeps the events
// in the catalog and the seals in the repositories, and hands both to
// Verify. docs/audit.md describes the encoding, the chain and the seals.
package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Event types.
const (
	TypeBackup       = "backup"
	TypeWALPush      = "wal-push" // one event per asset and minute of archiving
	TypeRestore      = "restore"
	TypeDrill        = "drill"
	TypeVerify       = "verify"
	TypeExpire       = "expire"
	TypeDelete       = "delete" // one of the deletions an expire made
	TypeForget       = "forget"
	TypeCopy         = "copy"
	TypePin          = "pin"
	TypeUnpin        = "unpin"
	TypeKeyAdd       = "key-add"
	TypeKeyRemove    = "key-remove"
	TypeRepoInit     = "repo-init"
	TypePolicyReload = "policy-reload"
	// Approvals: a request stored for a protected action, a signature
	// added to one, a request spent by the action it approved, and an
	// --approval that did not let the action run.
	TypeApprovalRequested = "approval-requested"
	TypeApprovalGranted   = "approval-granted"
	TypeApprovalUsed      = "approval-used"
	TypeApprovalRefused   = "approval-refused"
)

// Outcomes.
const (
	OK      = "ok"
	Failed  = "failed"
	Refused = "refused" // not run: the policy or an approval said no
)

// Actor is who acted: the operating-system account, the host, and the
// repository keys the action opened repositories with.
type Actor struct {
	User string `json:"user"`
	UID  int    `json:"uid"`
	Host string `json:"host"`
	// Keys maps each repository the action used to the key object it
	// was opened with (keys/<id>): which of several keys was used.
	Keys map[string]string `json:"keys,omitempty"`
}

// Source is where the request came from: the SSH client of the session
// the command runs in, or the HTTP client of a request (reserved for
// actions that come over HTTP).
type Source struct {
	SSH  string `json:"ssh,omitempty"`
	HTTP string `json:"http,omitempty"`
}

// Event is one audited action. Its canonical encoding (Encode) is what
// the chain hashes; the field order below is that encoding's order.
type Event struct {
	Seq   uint64    `json:"seq"`
	Chain string    `json:"chain"`
	Time  time.Time `json:"time"`  // when the action ended, UTC
	Start time.Time `json:"start"` // when it began, UTC
	Type  string    `json:"type"`
	Asset string    `json:"asset,omitempty"`
	// Repository is the repository the action was on, when it names one
	// rather than an asset (verify, expire, repo init, key changes).
	Repository string `json:"repository,omitempty"`
	Outcome    string `json:"outcome"`
	Error      string `json:"error,omitempty"` // why it failed or was refused, on one line
	Actor      Actor  `json:"actor"`
	Source     Source `json:"source"`
	// Args is the command line, secrets redacted (Redact).
	Args []string `json:"args"`
	// Snapshot and Request are the ids the action produced or acted on:
	// a snapshot stored, restored, pinned or deleted; an approval request.
	Snapshot string `json:"snapshot,omitempty"`
	Request  string `json:"request,omitempty"`
	// Details are what else the action's type records (counts, WAL names,
	// a drill's verdict), secrets redacted.
	Details map[string]string `json:"details,omitempty"`
}

// Encode is the canonical encoding of an event: encoding/json of Event
// (fields in the order declared, map keys sorted, times in RFC 3339 with
// nanoseconds, UTC), without a trailing newline. It always begins with
// `{"seq":<decimal>,` so that a verifier finds an event's place without
// decoding it. The stored bytes, not a re-encoding, are what is hashed
// and verified, so a later change of this encoding cannot break old
// chains.
func Encode(e *Event) ([]byte, error) {
	c := *e
	c.Time, c.Start = c.Time.UTC(), c.Start.UTC()
	if c.Args == nil {
		c.Args = []string{}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return b, nil
}

// Decode reads an event from its canonical encoding.
func Decode(body []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("decode audit event: %w", err)
	}
	return &e, nil
}

var seqPrefix = []byte(`{"seq":`)

// errNoSeq is a body that does not start as Encode writes.
var errNoSeq = errors.New(`does not begin with {"seq":N,`)

// BodySeq reads the sequence number an encoded event begins with.
func BodySeq(body []byte) (uint64, error) {
	if !bytes.HasPrefix(body, seqPrefix) {
		return 0, errNoSeq
	}
	rest := body[len(seqPrefix):]
	end := bytes.IndexByte(rest, ',')
	if end <= 0 || end > 20 {
		return 0, errNoSeq
	}
	n, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	if err != nil {
		return 0, errNoSeq
	}
	return n, nil
}
