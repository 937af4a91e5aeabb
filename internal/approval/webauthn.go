package approval

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
)

// An approver may approve with a security key in the dashboard instead of
// an SSH key: the browser asks the key for a WebAuthn assertion whose
// challenge is the SHA-256 of the request's canonical text (with the
// namespace in front, so no other WebAuthn use can produce it), and the
// assertion is stored beside the SSH signatures. It is checked here, with
// no dashboard involved, against the webauthn_signers file: the approvers'
// credential public keys, written by whoever keeps the trust (as
// allowed_signers is), never by the dashboard, whose state a compromised
// host could change.

// webauthnFormat names a stored WebAuthn approval and its version.
const webauthnFormat = "lifeboat webauthn approval v1"

// webauthnEvidence is a WebAuthn approval as stored in the repository.
type webauthnEvidence struct {
	Format  string `json:"format"`
	Request string `json:"request"`
	// Credential is the PublicKeyCredential the browser returned
	// (id, rawId, type, response: authenticatorData, clientDataJSON,
	// signature, userHandle; base64url), unchanged: what the key signed.
	Credential json.RawMessage `json:"credential"`
}

// WebAuthnChallenge is the challenge an approver's security key signs
// for q: SHA-256 over the namespace, a newline and the canonical text.
func WebAuthnChallenge(q *Request) []byte {
	h := sha256.New()
	h.Write([]byte(Namespace + "\n"))
	h.Write(q.Canonical())
	return h.Sum(nil)
}

// NewWebAuthnApproval wraps the browser's assertion for request id as the
// document stored with the request.
func NewWebAuthnApproval(id string, credential []byte) ([]byte, error) {
	if len(credential) > maxWebAuthnSize/2 {
		return nil, fmt.Errorf("a security key's answer of %d bytes is not an approval", len(credential))
	}
	if !json.Valid(credential) {
		return nil, errors.New("the security key's answer is not JSON")
	}
	return json.Marshal(webauthnEvidence{Format: webauthnFormat, Request: id, Credential: credential})
}

// maxWebAuthnSize bounds a stored WebAuthn approval: a key's answer is
// well under a kilobyte.
const maxWebAuthnSize = 64 << 10

// IsWebAuthn reports whether a stored approval is a WebAuthn assertion
// rather than an SSH signature.
func IsWebAuthn(sig []byte) bool {
	if !bytes.HasPrefix(bytes.TrimSpace(sig), []byte("{")) {
		return false
	}
	var e struct {
		Format string `json:"format"`
	}
	return json.Unmarshal(sig, &e) == nil && e.Format == webauthnFormat
}

// WebAuthnKey is one line of webauthn_signers: an approver's principal and
// a registered credential.
type WebAuthnKey struct {
	Principal    string
	CredentialID []byte
	// PublicKey is the credential's COSE public key.
	PublicKey []byte
}

// Fingerprint names the key in verdicts and the audit trail, as an SSH
// key's SHA256 fingerprint names it.
func (k WebAuthnKey) Fingerprint() string { return WebAuthnFingerprint(k.PublicKey) }

// WebAuthnFingerprint is the fingerprint of a COSE public key.
func WebAuthnFingerprint(cose []byte) string {
	sum := sha256.Sum256(cose)
	return "WEBAUTHN SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// Line is the key as a line of webauthn_signers.
func (k WebAuthnKey) Line() string {
	b := base64.RawURLEncoding
	return fmt.Sprintf("%s webauthn %s %s", k.Principal, b.EncodeToString(k.CredentialID), b.EncodeToString(k.PublicKey))
}

// ReadWebAuthnSigners reads a webauthn_signers file: one key per line,
// "PRINCIPAL webauthn CREDENTIAL-ID PUBLIC-KEY" (base64url), blank lines
// and # comments ignored. A line that cannot be read is an error naming
// it: a trust file is not guessed at.
func ReadWebAuthnSigners(path string) ([]WebAuthnKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("approvals.webauthn_signers: %w", err)
	}
	var keys []WebAuthnKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 || f[1] != "webauthn" {
			return nil, fmt.Errorf("%s:%d: write PRINCIPAL webauthn CREDENTIAL-ID PUBLIC-KEY (the line the dashboard's account page shows)", path, n)
		}
		id, err1 := base64.RawURLEncoding.DecodeString(f[2])
		pub, err2 := base64.RawURLEncoding.DecodeString(f[3])
		if err1 != nil || err2 != nil || len(id) == 0 {
			return nil, fmt.Errorf("%s:%d: the credential id and public key must be base64url", path, n)
		}
		if _, err := webauthncose.ParsePublicKey(pub); err != nil {
			return nil, fmt.Errorf("%s:%d: not a COSE public key: %v", path, n, err)
		}
		keys = append(keys, WebAuthnKey{Principal: f[0], CredentialID: id, PublicKey: pub})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("approvals.webauthn_signers: %w", err)
	}
	return keys, nil
}

// RelyingPartyID is the WebAuthn relying party id of an origin: its host.
func RelyingPartyID(origin string) string {
	u, err := url.Parse(origin)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// checkWebAuthn verifies one stored WebAuthn approval of q against keys:
// the principals it approves as, or why it does not count. The rules are
// the WebAuthn specification's for an assertion (type webauthn.get, the
// challenge, the origin, the relying party id's hash, user presence and
// user verification flags, the signature by the registered public key);
// the signature counter is not checked, as there is no trusted place to
// keep it.
func (c *Checker) checkWebAuthn(q *Request, sig []byte, keys []WebAuthnKey) (key string, principals []string, reason string) {
	if len(sig) > maxWebAuthnSize {
		return "", nil, fmt.Sprintf("a WebAuthn approval of %d bytes is not an approval", len(sig))
	}
	var e webauthnEvidence
	if err := json.Unmarshal(sig, &e); err != nil {
		return "", nil, "unreadable WebAuthn approval: " + err.Error()
	}
	if e.Request != q.ID {
		return "", nil, fmt.Sprintf("a WebAuthn approval of request %s, not of this one", e.Request)
	}
	cred, err := protocol.ParseCredentialRequestResponseBytes(e.Credential)
	if err != nil {
		return "", nil, "unreadable WebAuthn assertion: " + protocolError(err)
	}
	if c.WebAuthnSigners == "" {
		return "", nil, "the policy names no webauthn_signers: security-key approvals do not count"
	}
	challenge := base64.RawURLEncoding.EncodeToString(WebAuthnChallenge(q))
	rpID := RelyingPartyID(c.WebAuthnOrigin)
	listed := false
	var why string
	for _, k := range keys {
		if !bytes.Equal(k.CredentialID, cred.RawID) {
			continue
		}
		listed = true
		key = k.Fingerprint()
		err := cred.Verify(challenge, rpID, "", []string{c.WebAuthnOrigin}, nil, nil, protocol.TopOriginImplicitVerificationMode,
			false, true, true, k.PublicKey, protocol.SignaturePolicy{})
		if err != nil {
			why = protocolError(err)
			continue
		}
		principals = append(principals, k.Principal)
	}
	switch {
	case !listed:
		return "", nil, "the security key is not in " + c.WebAuthnSigners
	case len(principals) == 0:
		return key, nil, "the security key's assertion does not verify over this request at " + c.WebAuthnOrigin + ": " + why
	}
	return key, principals, ""
}

// protocolError is go-webauthn's error with its details, on one line.
func protocolError(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		msg := pe.Details
		if pe.DevInfo != "" {
			msg += " (" + pe.DevInfo + ")"
		}
		return msg
	}
	return err.Error()
}
