package approval

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Signatures are checked by OpenSSH's own ssh-keygen -Y verify, the
// reference implementation of sshsig and of the allowed_signers format
// (principal patterns, namespaces=, valid-after=, valid-before=,
// cert-authority): a second implementation would be a second place for
// a forgery to slip through. Go only reads the signature's public key,
// to tell keys apart.

// Approver is one valid approval: a principal of allowed_signers and the
// key (its SHA256 fingerprint) that signed.
type Approver struct {
	Principal string `json:"principal"`
	Key       string `json:"key"`
}

// Refusal is a signature that does not count, and why.
type Refusal struct {
	Key    string `json:"key,omitempty"`
	Reason string `json:"reason"`
}

// Verdict is what the signatures of a request are worth.
type Verdict struct {
	// Approvers count towards Required: distinct principals, distinct
	// keys, none the requester's.
	Approvers []Approver `json:"approvers"`
	Refused   []Refusal  `json:"refused,omitempty"`
	Required  int        `json:"required"`
}

// Enough reports whether the request has the approvals it needs.
func (v *Verdict) Enough() bool { return len(v.Approvers) >= v.Required }

// Checker checks approval signatures: SSH signatures against an
// allowed_signers file, WebAuthn assertions against a webauthn_signers
// file (webauthn.go).
type Checker struct {
	// AllowedSigners is the OpenSSH allowed_signers file naming the
	// approvers; "" when approvers use security keys in the dashboard only.
	AllowedSigners string
	// Keygen is the ssh-keygen program; "" finds it on PATH.
	Keygen string
	// WebAuthnSigners is the file of approvers' registered security keys,
	// and WebAuthnOrigin the dashboard's origin they sign for; "" when
	// the policy has none.
	WebAuthnSigners string
	WebAuthnOrigin  string
}

func (c *Checker) keygen() (string, error) {
	if c.Keygen != "" {
		return c.Keygen, nil
	}
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		return "", fmt.Errorf("approvals are checked with OpenSSH's ssh-keygen, which is not installed (install openssh-client): %w", err)
	}
	return p, nil
}

// sshEnv is what checking SSH signatures needs, set up on the first one.
type sshEnv struct {
	keygen, dir string
}

func (c *Checker) sshEnv(env **sshEnv) error {
	if *env != nil {
		return nil
	}
	if _, err := os.Stat(c.AllowedSigners); err != nil {
		return fmt.Errorf("approvals.allowed_signers: %w", err)
	}
	keygen, err := c.keygen()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "lifeboat-approval-")
	if err != nil {
		return err
	}
	*env = &sshEnv{keygen: keygen, dir: dir}
	return nil
}

// Check judges the signatures of q. An error is returned only when they
// cannot be judged (no ssh-keygen, no allowed_signers file, an unreadable
// webauthn_signers file); every signature that does not count is in
// Verdict.Refused with its reason.
func (c *Checker) Check(ctx context.Context, q *Request, sigs [][]byte) (*Verdict, error) {
	v := &Verdict{Required: q.Required}
	if len(sigs) == 0 {
		return v, nil
	}
	var env *sshEnv
	defer func() {
		if env != nil {
			os.RemoveAll(env.dir)
		}
	}()
	var webauthnKeys []WebAuthnKey
	webauthnRead := false
	msg := q.Canonical()
	// keys maps each signing key to the principals it verifies as.
	keys := map[string][]string{}
	var order []string
	for i, sig := range sigs {
		var key string
		var principals []string
		if IsWebAuthn(sig) {
			if !webauthnRead {
				if c.WebAuthnSigners != "" {
					var err error
					if webauthnKeys, err = ReadWebAuthnSigners(c.WebAuthnSigners); err != nil {
						return nil, err
					}
				}
				webauthnRead = true
			}
			var reason string
			key, principals, reason = c.checkWebAuthn(q, sig, webauthnKeys)
			if reason != "" {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: reason})
				continue
			}
		} else {
			var err error
			key, err = SignatureKey(sig)
			if err != nil {
				v.Refused = append(v.Refused, Refusal{Reason: err.Error()})
				continue
			}
			if c.AllowedSigners == "" {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: "the policy names no allowed_signers: SSH signatures do not count"})
				continue
			}
			if _, seen := keys[key]; seen {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: "a second signature by the same key counts once"})
				continue
			}
			if err := c.sshEnv(&env); err != nil {
				return nil, err
			}
			path := filepath.Join(env.dir, fmt.Sprintf("sig%d", i))
			if err := os.WriteFile(path, sig, 0o600); err != nil {
				return nil, err
			}
			listed, err := c.findPrincipals(ctx, env.keygen, path)
			if err != nil {
				return nil, err
			}
			if len(listed) == 0 {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: "the key is not in " + c.AllowedSigners})
				continue
			}
			if p := slices.IndexFunc(listed, func(p string) bool { return IsRequester(p, q.Requester) }); p >= 0 {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: fmt.Sprintf("the key is the requester's (%s): nobody approves their own request", listed[p])})
				continue
			}
			for _, p := range listed {
				ok, err := c.verify(ctx, env.keygen, path, p, msg)
				if err != nil {
					return nil, err
				}
				if ok {
					principals = append(principals, p)
				}
			}
			if len(principals) == 0 {
				v.Refused = append(v.Refused, Refusal{Key: key, Reason: "the signature does not verify over this request (signed another request, another namespace, or outside the key's validity in allowed_signers)"})
				continue
			}
		}
		if _, seen := keys[key]; seen {
			v.Refused = append(v.Refused, Refusal{Key: key, Reason: "a second signature by the same key counts once"})
			continue
		}
		if p := slices.IndexFunc(principals, func(p string) bool { return IsRequester(p, q.Requester) }); p >= 0 {
			v.Refused = append(v.Refused, Refusal{Key: key, Reason: fmt.Sprintf("the key is the requester's (%s): nobody approves their own request", principals[p])})
			continue
		}
		keys[key] = principals
		order = append(order, key)
	}
	for key, principal := range match(order, keys) {
		v.Approvers = append(v.Approvers, Approver{Principal: principal, Key: key})
	}
	slices.SortFunc(v.Approvers, func(a, b Approver) int { return strings.Compare(a.Principal, b.Principal) })
	for _, key := range order {
		if !slices.ContainsFunc(v.Approvers, func(a Approver) bool { return a.Key == key }) {
			v.Refused = append(v.Refused, Refusal{Key: key, Reason: "its principals (" + strings.Join(keys[key], ", ") + ") approved already with another key"})
		}
	}
	return v, nil
}

// match pairs keys with principals so that no key and no principal counts
// twice, as many pairs as possible (augmenting paths: a key may be
// listed for several principals, and the first choice is not always the
// one that lets every other key count).
func match(order []string, keys map[string][]string) map[string]string {
	owner := map[string]string{} // principal -> key
	var try func(key string, seen map[string]bool) bool
	try = func(key string, seen map[string]bool) bool {
		for _, p := range keys[key] {
			if seen[p] {
				continue
			}
			seen[p] = true
			if k, taken := owner[p]; !taken || try(k, seen) {
				owner[p] = key
				return true
			}
		}
		return false
	}
	for _, key := range order {
		try(key, map[string]bool{})
	}
	out := map[string]string{}
	for p, k := range owner {
		out[k] = p
	}
	return out
}

// IsRequester reports whether an allowed_signers principal is the
// requester: the name of the requester's OS user or login user, or that
// name followed by @domain. Erring towards "the requester" only ever
// refuses an approval.
func IsRequester(principal string, r Requester) bool {
	local, _, _ := strings.Cut(principal, "@")
	for _, name := range []string{r.User, r.Login} {
		if name != "" && (principal == name || local == name) {
			return true
		}
	}
	return false
}

func (c *Checker) findPrincipals(ctx context.Context, keygen, sigPath string) ([]string, error) {
	cmd := exec.CommandContext(ctx, keygen, "-Y", "find-principals", "-f", c.AllowedSigners, "-s", sigPath)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil, nil // no principal matched (or a signature it cannot read)
	}
	if err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y find-principals: %w", err)
	}
	var ps []string
	for _, l := range strings.Split(out.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			ps = append(ps, l)
		}
	}
	return ps, nil
}

func (c *Checker) verify(ctx context.Context, keygen, sigPath, principal string, msg []byte) (bool, error) {
	cmd := exec.CommandContext(ctx, keygen, "-Y", "verify", "-f", c.AllowedSigners, "-I", principal, "-n", Namespace, "-s", sigPath)
	cmd.Stdin = bytes.NewReader(msg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("ssh-keygen -Y verify: %w", err)
	}
	return true, nil
}

// Sign signs q with the private key at keyPath (or, given a .pub, the
// agent's key) through ssh-keygen -Y sign; a FIDO key (sk-ssh-ed25519)
// asks for a touch on stderr, and a passphrase is asked on the terminal.
func Sign(ctx context.Context, keygen, keyPath string, q *Request, stderr io.Writer) ([]byte, error) {
	if keygen == "" {
		p, err := (&Checker{}).keygen()
		if err != nil {
			return nil, err
		}
		keygen = p
	}
	cmd := exec.CommandContext(ctx, keygen, "-Y", "sign", "-q", "-f", keyPath, "-n", Namespace)
	cmd.Stdin = bytes.NewReader(q.Canonical())
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(stderr, &errb)
	}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg != "" {
			return nil, fmt.Errorf("ssh-keygen -Y sign with %s: %s: %w", keyPath, strings.ReplaceAll(msg, "\n", "; "), err)
		}
		return nil, fmt.Errorf("ssh-keygen -Y sign with %s: %w", keyPath, err)
	}
	if _, err := SignatureKey(out.Bytes()); err != nil {
		return nil, fmt.Errorf("ssh-keygen -Y sign with %s wrote no signature: %w", keyPath, err)
	}
	return out.Bytes(), nil
}

const (
	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
	sigMagic   = "SSHSIG"
	maxSigSize = 16 << 10
)

// SignatureKey reads an armored sshsig signature far enough to name the
// key that made it (its SHA256 fingerprint) and to refuse one made for
// another namespace. It proves nothing: ssh-keygen -Y verify does.
func SignatureKey(armored []byte) (string, error) {
	if len(armored) > maxSigSize {
		return "", fmt.Errorf("a signature of %d bytes is not an approval", len(armored))
	}
	text := strings.TrimSpace(string(armored))
	body, ok := strings.CutPrefix(text, armorBegin)
	if !ok {
		return "", errors.New("not an SSH signature (no " + armorBegin + ")")
	}
	body, ok = strings.CutSuffix(body, armorEnd)
	if !ok {
		return "", errors.New("not an SSH signature (no " + armorEnd + ")")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return "", fmt.Errorf("not an SSH signature: %w", err)
	}
	rest, ok := bytes.CutPrefix(raw, []byte(sigMagic))
	if !ok {
		return "", errors.New("not an SSH signature (no SSHSIG magic)")
	}
	var blob struct {
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  []byte
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(rest, &blob); err != nil {
		return "", fmt.Errorf("not an SSH signature: %w", err)
	}
	if blob.Version != 1 {
		return "", fmt.Errorf("SSH signature version %d; OpenSSH writes 1", blob.Version)
	}
	pub, err := ssh.ParsePublicKey(blob.PublicKey)
	if err != nil {
		return "", fmt.Errorf("SSH signature with an unreadable key: %w", err)
	}
	fp := ssh.FingerprintSHA256(pub)
	if blob.Namespace != Namespace {
		return "", fmt.Errorf("signature by %s is for namespace %q, not %q", fp, blob.Namespace, Namespace)
	}
	if strings.HasPrefix(pub.Type(), "sk-") {
		// ssh-keygen -Y verify does not look at a security key's flags:
		// a signature the token made without a touch would pass.
		var sk struct {
			Type    string
			Sig     []byte
			Flags   byte
			Counter uint32
		}
		if err := ssh.Unmarshal(blob.Signature, &sk); err != nil {
			return "", fmt.Errorf("signature by %s: unreadable security-key signature: %w", fp, err)
		}
		if sk.Flags&skUserPresent == 0 {
			return "", fmt.Errorf("signature by %s was made without a touch of the security key (user presence not asserted)", fp)
		}
	}
	return fp, nil
}

// skUserPresent is the flag a FIDO authenticator sets when it was touched.
const skUserPresent = 0x01

// Authorize says whether q may be used now with these signatures: not
// expired, and signed by enough approvers. Whether it was used before is
// the caller's to ask (Used, and its own record).
func (c *Checker) Authorize(ctx context.Context, q *Request, sigs [][]byte, now time.Time) (*Verdict, error) {
	if q.Expired(now) {
		return nil, fmt.Errorf("approval request %s expired at %s: %w", q.ID, q.Expires.UTC().Format(time.RFC3339), ErrExpired)
	}
	v, err := c.Check(ctx, q, sigs)
	if err != nil {
		return nil, err
	}
	if !v.Enough() {
		msg := fmt.Sprintf("approval request %s has %d of the %d approvals it needs", q.ID, len(v.Approvers), v.Required)
		for _, r := range v.Refused {
			if r.Key != "" {
				msg += fmt.Sprintf("; refused %s: %s", r.Key, r.Reason)
			} else {
				msg += "; refused a signature: " + r.Reason
			}
		}
		return v, fmt.Errorf("%s: %w", msg, ErrNotApproved)
	}
	return v, nil
}

// ErrExpired and ErrNotApproved are matched by requests that may not be
// used.
var (
	ErrExpired     = errors.New("approval request expired")
	ErrNotApproved = errors.New("not approved")
)
