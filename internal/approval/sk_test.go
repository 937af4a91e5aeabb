package approval

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// A FIDO key (sk-ssh-ed25519) cannot be made here without an
// authenticator, so this test plays the authenticator: it signs an
// approval the way a token does (PROTOCOL.u2f: the ed25519 signature
// covers SHA-256 of the application, the flags, the counter and SHA-256
// of the sshsig data), and ssh-keygen -Y verify judges it. A token's
// signature with the user-presence flag counts; one without a touch does
// not.

const skType = "sk-ssh-ed25519@openssh.com"

type fakeToken struct {
	priv ed25519.PrivateKey
	blob []byte // the public key in SSH wire format
}

func newFakeToken(t *testing.T) *fakeToken {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blob := ssh.Marshal(struct {
		Type        string
		Key         []byte
		Application string
	}{skType, pub, "ssh:"})
	return &fakeToken{priv: priv, blob: blob}
}

// sign makes an armored sshsig signature of msg, with the token's flags.
func (k *fakeToken) sign(msg []byte, flags byte) []byte {
	h := sha512.Sum512(msg)
	data := append([]byte("SSHSIG"), ssh.Marshal(struct {
		Namespace string
		Reserved  string
		HashAlg   string
		Hash      []byte
	}{Namespace, "", "sha512", h[:]})...)
	app := sha256.Sum256([]byte("ssh:"))
	dh := sha256.Sum256(data)
	var counter [4]byte
	binary.BigEndian.PutUint32(counter[:], 7)
	signed := append(append(append(app[:], flags), counter[:]...), dh[:]...)
	sig := ssh.Marshal(struct {
		Type    string
		Sig     []byte
		Flags   byte
		Counter uint32
	}{skType, ed25519.Sign(k.priv, signed), flags, 7})
	raw := append([]byte("SSHSIG"), ssh.Marshal(struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}{1, k.blob, Namespace, "", "sha512", sig})...)
	b64 := base64.StdEncoding.EncodeToString(raw)
	var out strings.Builder
	out.WriteString(armorBegin + "\n")
	for len(b64) > 70 {
		out.WriteString(b64[:70] + "\n")
		b64 = b64[70:]
	}
	out.WriteString(b64 + "\n" + armorEnd + "\n")
	return []byte(out.String())
}

func TestSecurityKeySignatures(t *testing.T) {
	t.Parallel()
	alice, bob := newFakeToken(t), newFakeToken(t)
	signers := filepath.Join(t.TempDir(), "allowed_signers")
	lines := "alice@example.com " + skType + " " + base64.StdEncoding.EncodeToString(alice.blob) + "\n" +
		"bob@example.com " + skType + " " + base64.StdEncoding.EncodeToString(bob.blob) + "\n"
	if err := os.WriteFile(signers, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Checker{AllowedSigners: signers}
	now := time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)
	q := request(now)
	const userPresent = 0x01
	v, err := c.Authorize(t.Context(), q, [][]byte{alice.sign(q.Canonical(), userPresent), bob.sign(q.Canonical(), userPresent)}, now)
	if err != nil || len(v.Approvers) != 2 {
		t.Fatalf("two touched security-key signatures: %v %+v", err, v)
	}
	v, err = c.Authorize(t.Context(), q, [][]byte{alice.sign(q.Canonical(), userPresent), bob.sign(q.Canonical(), 0)}, now)
	if err == nil || len(v.Approvers) != 1 || v.Approvers[0].Principal != "alice@example.com" || !strings.Contains(err.Error(), "without a touch") {
		t.Fatalf("a signature made without a touch counted: %v %+v", err, v)
	}
	if _, err := c.Authorize(t.Context(), q, [][]byte{alice.sign(q.Canonical(), userPresent), bob.sign(request(now).Canonical(), userPresent)}, now); err == nil {
		t.Fatal("a security-key signature of another request counted")
	}
}
