// Package approval is two-person approval of protected actions: a request
// that names one action exactly, kept in the repository; approvers' SSH
// signatures over it (OpenSSH's sshsig format, namespace
// lifeboat-approval, checked with ssh-keygen -Y verify against an
// allowed_signers file) or WebAuthn assertions made with a security key in
// the dashboard (checked against a webauthn_signers file, webauthn.go);
// and the rules that decide whether an action may run on it, once. docs/approvals.md describes the protocol and what an
// attacker with which access can and cannot do.
package approval

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Namespace is the sshsig namespace of every approval signature: a
// signature made for anything else (git commits, files) does not verify
// as an approval.
const Namespace = "lifeboat-approval"

// Version is the version of the request document this build writes.
const Version = 1

// Request asks for approval of one protected action with exactly these
// arguments.
type Request struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Action is the protected action's name in the policy
	// (restore_production, expire, unpin, key_remove, retention_reduce).
	Action string `json:"action"`
	// Asset is the asset acted on; "" for an action on a repository.
	Asset string `json:"asset,omitempty"`
	// Args are the action's arguments, in the canonical order (by name);
	// an action runs on the request only when its own arguments are
	// exactly these.
	Args      []Arg     `json:"args"`
	Requester Requester `json:"requester"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Required is how many approvers must sign, other than the requester.
	Required int `json:"required"`
}

// Arg is one argument of an action.
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Requester is who asked: the OS user, as the host that asked knows it.
type Requester struct {
	User string `json:"user"`
	UID  int    `json:"uid"`
	Host string `json:"host"`
	// Login is the user who logged in to the session the request came
	// from (the kernel's audit login uid), when it differs from User:
	// sudo and runuser change the user, not the login, so a DBA who runs
	// Lifeboat as postgres is still named.
	Login string `json:"login,omitempty"`
}

// String is user (uid N) @ host, as listings show it.
func (r Requester) String() string {
	s := fmt.Sprintf("%s(uid %d)@%s", r.User, r.UID, r.Host)
	if r.Login != "" {
		s += " logged in as " + r.Login
	}
	return s
}

// CurrentRequester is the user this process runs as, on this host.
func CurrentRequester() Requester {
	rq := Requester{UID: os.Getuid()}
	if u, err := user.Current(); err == nil {
		rq.User = u.Username
	}
	if rq.User == "" {
		rq.User = "uid" + strconv.Itoa(rq.UID)
	}
	rq.Host, _ = os.Hostname()
	if login := loginUser(); login != rq.User {
		rq.Login = login
	}
	return rq
}

// loginUser is the name of the audit login uid of this process, "" when
// it has none (a daemon, a container without pam_loginuid).
func loginUser() string {
	data, err := os.ReadFile("/proc/self/loginuid")
	if err != nil {
		return ""
	}
	s := strings.TrimSpace(string(data))
	if s == "" || s == "4294967295" {
		return ""
	}
	if u, err := user.LookupId(s); err == nil {
		return u.Username
	}
	return "uid" + s
}

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)

// NewID makes a request id: the time it was made and random bits,
// YYYYMMDDTHHMMSSZ-<8 hex>.
func NewID(now time.Time) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// ValidID reports whether id has the form NewID makes.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// New makes a request for action on asset with args, by requester, open
// from now for ttl, needing required signatures.
func New(action, asset string, args []Arg, requester Requester, now time.Time, ttl time.Duration, required int) *Request {
	now = now.UTC().Truncate(time.Second)
	return &Request{Version: Version, ID: NewID(now), Action: action, Asset: asset, Args: SortArgs(args),
		Requester: requester, Created: now, Expires: now.Add(ttl), Required: required}
}

// SortArgs returns args ordered by name (then value), the canonical order.
func SortArgs(args []Arg) []Arg {
	out := slices.Clone(args)
	slices.SortFunc(out, func(a, b Arg) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
	return out
}

// Canonical is the text approvers sign: every field of the request, one
// per line, values quoted so that no value can forge a line. It is what
// `lifeboat approvals --show` prints and what ssh-keygen -Y verify checks.
func (q *Request) Canonical() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "lifeboat approval request v%d\n", q.Version)
	fmt.Fprintf(&b, "id %s\n", strconv.Quote(q.ID))
	fmt.Fprintf(&b, "action %s\n", strconv.Quote(q.Action))
	fmt.Fprintf(&b, "asset %s\n", strconv.Quote(q.Asset))
	for _, a := range SortArgs(q.Args) {
		fmt.Fprintf(&b, "arg %s %s\n", strconv.Quote(a.Name), strconv.Quote(a.Value))
	}
	fmt.Fprintf(&b, "requester %s uid %d host %s login %s\n", strconv.Quote(q.Requester.User), q.Requester.UID,
		strconv.Quote(q.Requester.Host), strconv.Quote(q.Requester.Login))
	fmt.Fprintf(&b, "created %s\n", q.Created.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "expires %s\n", q.Expires.UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "required %d\n", q.Required)
	return b.Bytes()
}

// Describe is the action on one line, for listings and messages.
func (q *Request) Describe() string {
	var parts []string
	for _, a := range SortArgs(q.Args) {
		parts = append(parts, a.Name+"="+strconv.Quote(a.Value))
	}
	what := q.Action
	if q.Asset != "" {
		what += " of " + q.Asset
	}
	if len(parts) > 0 {
		what += " (" + strings.Join(parts, " ") + ")"
	}
	return what
}

// Matches says why an action with these arguments is not the one
// requested; nil when it is, byte for byte.
func (q *Request) Matches(action, asset string, args []Arg) error {
	if q.Action != action || q.Asset != asset {
		return fmt.Errorf("approval request %s is for %s, not for %s", q.ID, q.Describe(), (&Request{Action: action, Asset: asset, Args: args}).Describe())
	}
	want, got := SortArgs(q.Args), SortArgs(args)
	if !slices.Equal(want, got) {
		return fmt.Errorf("approval request %s is for %s; this run asks for %s", q.ID, q.Describe(), (&Request{Action: action, Asset: asset, Args: args}).Describe())
	}
	return nil
}

// Expired reports whether the request can no longer be used at now.
func (q *Request) Expired(now time.Time) bool { return !now.Before(q.Expires) }

// Marshal is the stored document.
func (q *Request) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(q, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode approval request %s: %w", q.ID, err)
	}
	return b, nil
}

// Unmarshal reads a stored request, which must be the one named id;
// versions this build does not know, and documents that do not hold
// together, are refused rather than misread.
func Unmarshal(id string, data []byte) (*Request, error) {
	var q Request
	if err := json.Unmarshal(data, &q); err != nil {
		return nil, fmt.Errorf("decode approval request %s: %w", id, err)
	}
	var problems []string
	if q.Version < 1 || q.Version > Version {
		problems = append(problems, fmt.Sprintf("version %d (this lifeboat reads up to %d)", q.Version, Version))
	}
	if q.ID != id {
		problems = append(problems, fmt.Sprintf("it names itself %q", q.ID))
	}
	if q.Action == "" {
		problems = append(problems, "no action")
	}
	if q.Required < 1 {
		problems = append(problems, fmt.Sprintf("required %d", q.Required))
	}
	if !q.Expires.After(q.Created) {
		problems = append(problems, "it expires before it was made")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("approval request %s: %s: %w", id, strings.Join(problems, ", "), ErrInvalid)
	}
	return &q, nil
}

// ErrInvalid is matched by a stored request that does not hold together.
var ErrInvalid = errors.New("invalid approval request")

// RequiredError is returned by a protected action run without approval:
// the request was created (or an identical open one found), and the
// action runs once approvers have signed it and it is run again with
// --approval RequestID. The CLI exits 3 on it.
type RequiredError struct {
	RequestID string
	Action    string
	// Asset is the asset acted on, "" for a repository action.
	Asset string
	// Required is how many approvals it needs; Existing says the request
	// was open already.
	Required int
	Existing bool
}

func (e *RequiredError) Error() string {
	what := e.Action
	if e.Asset != "" {
		what += " of " + e.Asset
	}
	verb := "created"
	if e.Existing {
		verb = "already open"
	}
	return fmt.Sprintf("%s needs approval by %d approvers: request %s %s; approvers run `lifeboat approve %s --key PATH`, then run this again with --approval %s",
		what, e.Required, e.RequestID, verb, e.RequestID, e.RequestID)
}
