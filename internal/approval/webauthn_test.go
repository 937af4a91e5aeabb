package approval

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// softKey plays a security key: a P-256 credential that answers WebAuthn
// assertions as an authenticator does (authenticator data, client data,
// an ECDSA signature over both), so the rules can be tested without a
// browser. The browser test (internal/web) does it with Chromium's
// virtual authenticator.
type softKey struct {
	id   []byte
	priv *ecdsa.PrivateKey
}

func newSoftKey(t *testing.T) *softKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	return &softKey{id: id, priv: priv}
}

func (k *softKey) cose(t *testing.T) []byte {
	t.Helper()
	pub, err := k.priv.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	raw := pub.Bytes() // 0x04 || X || Y
	b, err := webauthncbor.Marshal(webauthncose.EC2PublicKeyData{PublicKeyData: webauthncose.PublicKeyData{KeyType: 2, Algorithm: -7},
		Curve: 1, XCoord: raw[1:33], YCoord: raw[33:]})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (k *softKey) line(t *testing.T, principal string) string {
	return WebAuthnKey{Principal: principal, CredentialID: k.id, PublicKey: k.cose(t)}.Line()
}

// assert answers a get() for challenge at origin; flags as the
// authenticator sets them (0x01 user present, 0x04 user verified).
func (k *softKey) assert(t *testing.T, challenge []byte, origin, rpID string, flags byte) []byte {
	t.Helper()
	b := base64.RawURLEncoding
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": b.EncodeToString(challenge), "origin": origin, "crossOrigin": false})
	rp := sha256.Sum256([]byte(rpID))
	ad := append(rp[:], flags)
	ad = binary.BigEndian.AppendUint32(ad, 1)
	h := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), h[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	cred, _ := json.Marshal(map[string]any{"id": b.EncodeToString(k.id), "rawId": b.EncodeToString(k.id), "type": "public-key",
		"response": map[string]string{"clientDataJSON": b.EncodeToString(cd), "authenticatorData": b.EncodeToString(ad), "signature": b.EncodeToString(sig)}})
	return cred
}

// TestWebAuthnApprovals holds security-key approvals to the rules of SSH
// signatures: the key must be in webauthn_signers, the assertion over this
// request's challenge at the policy's origin, touched and verified, not
// the requester's, one per key and per principal.
func TestWebAuthnApprovals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const origin = "https://lifeboat.example:8420"
	dir := t.TempDir()
	alice, bob, carol, stranger := newSoftKey(t), newSoftKey(t), newSoftKey(t), newSoftKey(t)
	alice2 := newSoftKey(t)
	signers := filepath.Join(dir, "webauthn_signers")
	lines := []string{"# approvers' security keys", alice.line(t, "alice@example.com"), alice2.line(t, "alice@example.com"),
		bob.line(t, "bob"), carol.line(t, "carol@example.com")}
	if err := os.WriteFile(signers, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Checker{WebAuthnSigners: signers, WebAuthnOrigin: origin}
	now := time.Date(2026, 12, 5, 7, 15, 0, 0, time.UTC)
	q := New("restore_production", "ledger", []Arg{{Name: "to", Value: "/srv/pg"}}, Requester{User: "postgres", UID: 105, Host: "db1", Login: "carol"}, now, time.Hour, 2)
	other := New("restore_production", "ledger", []Arg{{Name: "to", Value: "/elsewhere"}}, q.Requester, now, time.Hour, 2)
	approve := func(k *softKey, req *Request, origin string, flags byte) []byte {
		doc, err := NewWebAuthnApproval(req.ID, k.assert(t, WebAuthnChallenge(req), origin, RelyingPartyID(origin), flags))
		if err != nil {
			t.Fatal(err)
		}
		return doc
	}
	const touched = 0x01 | 0x04
	otherDoc, _ := NewWebAuthnApproval(q.ID, alice.assert(t, WebAuthnChallenge(other), origin, "lifeboat.example", touched))
	for _, tc := range []struct {
		name   string
		sigs   [][]byte
		count  int
		reason string
	}{
		{"one is not enough for two", [][]byte{approve(alice, q, origin, touched)}, 1, ""},
		{"two approvers", [][]byte{approve(alice, q, origin, touched), approve(bob, q, origin, touched)}, 2, ""},
		{"the requester's key", [][]byte{approve(carol, q, origin, touched)}, 0, "the requester's (carol@example.com)"},
		{"a key not listed", [][]byte{approve(stranger, q, origin, touched)}, 0, "is not in " + signers},
		{"another request's challenge", [][]byte{otherDoc}, 0, "does not verify over this request"},
		{"another origin", [][]byte{approve(alice, q, "https://evil.example", touched)}, 0, "does not verify over this request"},
		{"not touched", [][]byte{approve(alice, q, origin, 0x04)}, 0, "does not verify over this request"},
		{"not verified (no PIN)", [][]byte{approve(alice, q, origin, 0x01)}, 0, "does not verify over this request"},
		{"one principal, two keys", [][]byte{approve(alice, q, origin, touched), approve(alice2, q, origin, touched)}, 1, "approved already with another key"},
		{"a document for another request", [][]byte{approve(alice, other, origin, touched)}, 0, "not of this one"},
		{"junk", [][]byte{[]byte(`{"format":"lifeboat webauthn approval v1","request":"` + q.ID + `","credential":{}}`)}, 0, "unreadable WebAuthn assertion"},
	} {
		v, err := c.Check(ctx, q, tc.sigs)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(v.Approvers) != tc.count {
			t.Errorf("%s: %d approvers %+v (refused %+v), want %d", tc.name, len(v.Approvers), v.Approvers, v.Refused, tc.count)
		}
		if tc.reason != "" && (len(v.Refused) == 0 || !strings.Contains(v.Refused[len(v.Refused)-1].Reason, tc.reason)) {
			t.Errorf("%s: refused %+v, want a reason saying %q", tc.name, v.Refused, tc.reason)
		}
	}
	// An SSH signature and a security key are two approvers; Authorize
	// holds expiry the same way.
	if _, err := c.Authorize(ctx, q, [][]byte{approve(alice, q, origin, touched), approve(bob, q, origin, touched)}, now.Add(2*time.Hour)); err == nil {
		t.Error("an expired request was authorized")
	}
	if _, err := c.Authorize(ctx, q, [][]byte{approve(alice, q, origin, touched), approve(bob, q, origin, touched)}, now.Add(time.Minute)); err != nil {
		t.Errorf("two approvers: %v", err)
	}
	// Without webauthn_signers in the policy, no security key counts.
	if v, err := (&Checker{}).Check(ctx, q, [][]byte{approve(alice, q, origin, touched)}); err != nil || len(v.Approvers) != 0 {
		t.Errorf("no webauthn_signers: %+v, %v", v, err)
	}
	// A trust file that cannot be read is an error, not a silent refusal.
	if err := os.WriteFile(signers, []byte("alice webauthn !!! ???\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctx, q, [][]byte{approve(alice, q, origin, touched)}); err == nil || !strings.Contains(err.Error(), signers+":1:") {
		t.Errorf("a damaged webauthn_signers: %v, want an error naming its line", err)
	}
}
