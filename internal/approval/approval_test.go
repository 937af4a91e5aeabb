package approval

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo/repotest"
)

// The keys are ed25519: an sk-ssh-ed25519 key cannot be made without a
// FIDO authenticator, and ssh-keygen verifies both the same way.

// team makes a key for each name in dir and an allowed_signers file
// listing the principals given (name -> principals); keys of names not
// in it are outside allowed_signers.
func team(t *testing.T, names []string, listed map[string]string) (dir, signers string) {
	t.Helper()
	dir = t.TempDir()
	var allowed bytes.Buffer
	for _, n := range names {
		key := filepath.Join(dir, n)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", n, "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := listed[n]; ok {
			f := strings.Fields(string(pub))
			allowed.WriteString(p + " " + f[0] + " " + f[1] + "\n")
		}
	}
	signers = filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(signers, allowed.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, signers
}

func request(now time.Time) *Request {
	return New("restore_production", "ledger", []Arg{{Name: "to", Value: "/srv/pg"}, {Name: "production", Value: "true"}},
		Requester{User: "carol", UID: 1003, Host: "db1"}, now, time.Hour, 2)
}

func sign(t *testing.T, dir, name string, q *Request) []byte {
	t.Helper()
	sig, err := Sign(t.Context(), "", filepath.Join(dir, name), q, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func TestRules(t *testing.T) {
	t.Parallel()
	dir, signers := team(t, []string{"alice", "bob", "carol", "mallory", "shared"},
		map[string]string{"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com",
			"shared": "dave@example.com,erin@example.com"})
	c := &Checker{AllowedSigners: signers}
	now := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	q := request(now)
	other := request(now) // same action and arguments, another request
	alice, bob := sign(t, dir, "alice", q), sign(t, dir, "bob", q)
	cases := []struct {
		name     string
		sigs     [][]byte
		approved []string
		refused  string
	}{
		{"one is not enough for two", [][]byte{alice}, []string{"alice@example.com"}, ""},
		{"the requester's own does not count", [][]byte{alice, sign(t, dir, "carol", q)}, []string{"alice@example.com"}, "requester's"},
		{"a key outside allowed_signers", [][]byte{alice, sign(t, dir, "mallory", q)}, []string{"alice@example.com"}, "not in"},
		{"a signature over another request", [][]byte{alice, sign(t, dir, "bob", other)}, []string{"alice@example.com"}, "does not verify"},
		{"one key twice counts once", [][]byte{alice, sign(t, dir, "alice", q)}, []string{"alice@example.com"}, ""},
		{"one key of two principals counts once", [][]byte{sign(t, dir, "shared", q)}, []string{"dave@example.com"}, ""},
		{"junk", [][]byte{alice, []byte("-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n")}, []string{"alice@example.com"}, "not an SSH signature"},
		{"two approvers", [][]byte{bob, alice}, []string{"alice@example.com", "bob@example.com"}, ""},
		{"shared key and alice", [][]byte{alice, sign(t, dir, "shared", q)}, []string{"alice@example.com", "dave@example.com"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, err := c.Authorize(t.Context(), q, tc.sigs, now.Add(time.Minute))
			var got []string
			if v != nil {
				for _, a := range v.Approvers {
					got = append(got, a.Principal)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.approved, " ") {
				t.Fatalf("approvers %v, want %v (verdict %+v)", got, tc.approved, v)
			}
			if enough := len(tc.approved) >= 2; enough != (err == nil) {
				t.Fatalf("Authorize: %v with %d approvers", err, len(got))
			}
			if err != nil && !errors.Is(err, ErrNotApproved) {
				t.Fatalf("refusal does not match ErrNotApproved: %v", err)
			}
			if tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)) {
				t.Fatalf("refusal %v does not say %q", err, tc.refused)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		if _, err := c.Authorize(t.Context(), q, [][]byte{alice, bob}, q.Expires); !errors.Is(err, ErrExpired) {
			t.Fatalf("at expiry: %v", err)
		}
		if _, err := c.Authorize(t.Context(), q, [][]byte{alice, bob}, q.Expires.Add(-time.Second)); err != nil {
			t.Fatalf("a second before expiry: %v", err)
		}
	})
	t.Run("other namespace", func(t *testing.T) {
		t.Parallel()
		cmd := exec.Command("ssh-keygen", "-Y", "sign", "-q", "-f", filepath.Join(dir, "bob"), "-n", "file")
		cmd.Stdin = bytes.NewReader(q.Canonical())
		sig, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		v, err := c.Authorize(t.Context(), q, [][]byte{alice, sig}, now)
		if err == nil || len(v.Approvers) != 1 || !strings.Contains(err.Error(), `namespace "file"`) {
			t.Fatalf("a signature for namespace file: %v, %+v", err, v)
		}
	})
	t.Run("a changed request", func(t *testing.T) {
		t.Parallel()
		changed := *q
		changed.Required = 1
		if v, err := c.Authorize(t.Context(), &changed, [][]byte{alice, bob}, now); err == nil || len(v.Approvers) != 0 {
			t.Fatalf("signatures over the request with another required count: %v %+v", err, v)
		}
	})
}

func TestMatchAndCanonical(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	q := request(now)
	if err := q.Matches("restore_production", "ledger", []Arg{{Name: "production", Value: "true"}, {Name: "to", Value: "/srv/pg"}}); err != nil {
		t.Fatalf("same arguments in another order: %v", err)
	}
	for _, args := range [][]Arg{
		{{Name: "production", Value: "true"}, {Name: "to", Value: "/srv/pg2"}},
		{{Name: "production", Value: "true"}},
		{{Name: "production", Value: "true"}, {Name: "to", Value: "/srv/pg"}, {Name: "snapshot", Value: "abcd"}},
	} {
		if err := q.Matches("restore_production", "ledger", args); err == nil {
			t.Errorf("arguments %v match %v", args, q.Args)
		}
	}
	if err := q.Matches("restore_production", "other", q.Args); err == nil {
		t.Error("another asset matches")
	}
	if err := q.Matches("expire", "ledger", q.Args); err == nil {
		t.Error("another action matches")
	}
	// A value cannot forge a line of the signed text.
	evil := New("expire", "", []Arg{{Name: "repository", Value: "main\nrequired 1"}}, q.Requester, now, time.Hour, 2)
	lines := strings.Split(strings.TrimSpace(string(evil.Canonical())), "\n")
	for _, l := range lines {
		if l == "required 1" {
			t.Fatalf("a value wrote a line of its own:\n%s", evil.Canonical())
		}
	}
	if !bytes.Equal(q.Canonical(), q.Canonical()) || !ValidID(q.ID) {
		t.Fatal("canonical text or id unstable")
	}
}

func TestRepositoryObjects(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := repotest.New(t)
	be := r.Backend()
	now := time.Now()
	q := request(now)
	if err := Store(ctx, r, q); err != nil {
		t.Fatal(err)
	}
	// A put-only credential plants junk: a request of its own making, a
	// group with a name no id has, a signature, a second copy of q.
	fake := request(now)
	put := func(name, data string) {
		if err := be.Put(ctx, name, strings.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	put("approvals/"+fake.ID+"/request", `{"version":1}`)
	put("approvals/not-an-id/request", "junk")
	put("approvals/"+q.ID+"/sig-0000000000000000", "-----BEGIN SSH SIGNATURE-----")
	reqs, bad, err := List(ctx, r)
	if err != nil || len(bad) != 0 || len(reqs) != 1 || reqs[0].ID != q.ID {
		t.Fatalf("List: %v %v %+v", err, bad, reqs)
	}
	if !bytes.Equal(reqs[0].Canonical(), q.Canonical()) {
		t.Fatalf("stored request reads back otherwise:\n%s\n%s", reqs[0].Canonical(), q.Canonical())
	}
	if _, err := Load(ctx, r, fake.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("planted request: %v", err)
	}
	dir, _ := team(t, []string{"alice"}, nil)
	sig := sign(t, dir, "alice", q)
	for range 2 {
		if err := AddSignature(ctx, r, q.ID, sig); err != nil {
			t.Fatal(err)
		}
	}
	if sigs, err := Signatures(ctx, r, q.ID); err != nil || len(sigs) != 1 || !bytes.Equal(sigs[0], sig) {
		t.Fatalf("Signatures: %v, %d", err, len(sigs))
	}
	if len(r.UnauthenticSince(0)) != 2 {
		t.Fatalf("planted objects not noted: %v", r.UnauthenticSince(0))
	}
	use := Use{Used: now, By: q.Requester}
	if err := MarkUsed(ctx, r, q.ID, use); err != nil {
		t.Fatal(err)
	}
	if err := MarkUsed(ctx, r, q.ID, use); !errors.Is(err, ErrUsed) {
		t.Fatalf("second use: %v", err)
	}
	// A used mark planted ahead spends the request; it cannot revive one.
	other := request(now.Add(time.Second))
	if err := Store(ctx, r, other); err != nil {
		t.Fatal(err)
	}
	put("approvals/"+other.ID+"/used", "junk")
	if used, err := Used(ctx, r, other.ID); err != nil || !used {
		t.Fatalf("squatted use mark: %v %v", used, err)
	}
	if err := MarkUsed(ctx, r, other.ID, use); !errors.Is(err, ErrUsed) {
		t.Fatalf("use of a request whose mark is squatted: %v", err)
	}
}
