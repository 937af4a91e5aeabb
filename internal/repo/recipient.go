package repo

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
)

// Public-key mode (docs/FORMAT.md §12). A repository initialised with a
// recipient seals the contents of backups (data frames, WAL files) to an
// X25519 data key whose private half only the holder of an identity can
// unwrap; the master key every writer holds still seals the metadata a
// writer needs (index, trees, snapshots) and keys blob IDs, so dedup and
// incrementals keep working on a host that cannot read a single block.

// recipientPrefix starts the text form of a recipient (an X25519 public
// key): a versioned tag, then the key in unpadded URL-safe base64.
const recipientPrefix = "lifeboat-recipient-v1:"

// ErrNoIdentity is returned (wrapped) when backup contents are sealed to
// a data key and no identity given opens it.
var ErrNoIdentity = errors.New("no identity opens the data key")

// Recipient is an X25519 public key that backup contents are sealed to.
type Recipient struct {
	pub *ecdh.PublicKey
}

// String is the recipient's text form, as in a recipient file.
func (rc Recipient) String() string {
	return recipientPrefix + base64.RawURLEncoding.EncodeToString(rc.pub.Bytes())
}

// ID is the short name of the recipient: 16 hex digits of the SHA-256 of
// its key.
func (rc Recipient) ID() string { return keyID(rc.pub.Bytes()) }

// keyID names an X25519 public key by the first 8 bytes of its SHA-256.
func keyID(pub []byte) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// ParseRecipient parses the text form of a recipient.
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, recipientPrefix)
	if !ok {
		return Recipient{}, fmt.Errorf("not a lifeboat recipient (want %q and a key, as `lifeboat repo keygen` writes)", recipientPrefix)
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 32 {
		return Recipient{}, errors.New("recipient key is not 32 bytes of base64")
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return Recipient{}, fmt.Errorf("recipient key: %w", err)
	}
	return Recipient{pub: pub}, nil
}

// ReadRecipientFile reads a recipient file: its first line that is not
// empty and not a comment ('#').
func ReadRecipientFile(path string) (Recipient, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return Recipient{}, fmt.Errorf("read recipient file: %w", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rc, err := ParseRecipient(line)
		if err != nil {
			return Recipient{}, fmt.Errorf("recipient file %s: %w", path, err)
		}
		return rc, nil
	}
	return Recipient{}, fmt.Errorf("recipient file %s holds no recipient", path)
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxKeyFileSize)
	}
	return data, nil
}

// Identity is the private half of a recipient: it opens the data keys
// wrapped to that recipient. It never prints its material.
type Identity struct {
	priv   *ecdh.PrivateKey
	source string
}

// Recipient is the public half of the identity.
func (id *Identity) Recipient() Recipient { return Recipient{pub: id.priv.PublicKey()} }

// String names the identity's origin and recipient, never its key.
func (id *Identity) String() string { return id.source + " (recipient " + id.Recipient().ID() + ")" }

// GoString keeps %#v from printing the key.
func (id *Identity) GoString() string { return "repo.Identity(" + id.source + ")" }

// identityFile is the JSON of an identity file: the X25519 private key
// sealed by a key-encryption key derived from a passphrase (Argon2id) or
// a key file (HKDF), exactly as the master key is in a key object.
type identityFile struct {
	Version   int           `json:"version"`
	Type      string        `json:"type"` // identityType
	Recipient string        `json:"recipient"`
	KDF       string        `json:"kdf"` // argon2id or hkdf-sha256
	Salt      []byte        `json:"salt"`
	Argon2    *argon2Params `json:"argon2,omitempty"`
	Created   time.Time     `json:"created"`
	Data      []byte        `json:"data"` // nonce || AES-256-GCM(KEK, nonce, private key, identityAD) || tag
}

const identityType = "lifeboat identity"

var identityAD = []byte("lifeboat identity")

// identityKEK derives the key that seals an identity file.
func identityKEK(s Secret, f *identityFile) ([]byte, error) {
	switch f.KDF {
	case kdfArgon2:
		if f.Argon2 == nil {
			return nil, errors.New("argon2id without parameters")
		}
		if err := f.Argon2.check(); err != nil {
			return nil, err
		}
		return argon2.IDKey(s.material, f.Salt, f.Argon2.Time, f.Argon2.Memory, f.Argon2.Threads, 32), nil
	case kdfHKDF:
		return hkdf.Key(sha256.New, s.material, f.Salt, "lifeboat identity key v1", 32)
	}
	return nil, fmt.Errorf("unknown key derivation %q", f.KDF)
}

// GenerateIdentity makes a new identity, writes it to identityPath sealed
// by s, and its recipient to recipientPath. s is a passphrase (Argon2id,
// the costs of key objects: for an identity kept offline) or a key file
// of 64 hex digits (HKDF: for a restore host, where every wal-fetch opens
// the identity and must not spend half a second on it). Neither file may
// exist: overwriting an identity would lose every backup sealed to it.
func GenerateIdentity(identityPath, recipientPath string, s Secret) (Recipient, error) {
	if s.legacy {
		return Recipient{}, errLegacyKeyFile(s)
	}
	for _, p := range []string{identityPath, recipientPath} {
		if _, err := os.Lstat(p); err == nil {
			return Recipient{}, fmt.Errorf("%s exists: an identity or recipient file is never overwritten", p)
		}
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return Recipient{}, err
	}
	rc := Recipient{pub: priv.PublicKey()}
	f := identityFile{Version: formatVersion, Type: identityType, Recipient: rc.String(), KDF: kdfHKDF,
		Salt: make([]byte, keySaltSize), Created: time.Now().UTC()}
	if s.passphrase {
		p := defaultArgon2
		f.KDF, f.Argon2 = kdfArgon2, &p
	}
	if _, err := rand.Read(f.Salt); err != nil {
		return Recipient{}, err
	}
	kek, err := identityKEK(s, &f)
	if err != nil {
		return Recipient{}, err
	}
	aead, err := newGCM(kek)
	if err != nil {
		return Recipient{}, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return Recipient{}, err
	}
	f.Data = aead.Seal(nonce, nonce, priv.Bytes(), identityAD)
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return Recipient{}, err
	}
	for _, p := range []string{identityPath, recipientPath} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return Recipient{}, err
		}
	}
	if err := durable.WriteNew(identityPath, append(data, '\n'), 0o600); err != nil {
		return Recipient{}, fmt.Errorf("write identity: %w", err)
	}
	text := "# lifeboat recipient: backups sealed to it can be read only with the identity " + filepath.Base(identityPath) + "\n" + rc.String() + "\n"
	if err := durable.WriteNew(recipientPath, []byte(text), 0o644); err != nil {
		return Recipient{}, fmt.Errorf("write recipient: %w", err)
	}
	return rc, nil
}

// ReadIdentityFile opens an identity file with its passphrase or key file.
func ReadIdentityFile(path string, s Secret) (*Identity, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	var f identityFile
	if err := json.Unmarshal(data, &f); err != nil || f.Type != identityType {
		return nil, fmt.Errorf("identity file %s is not a lifeboat identity (`lifeboat repo keygen` writes one)", path)
	}
	if f.Version != formatVersion || (f.KDF != kdfArgon2 && f.KDF != kdfHKDF) || len(f.Salt) != keySaltSize {
		return nil, fmt.Errorf("identity file %s: version %d, kdf %q: not supported", path, f.Version, f.KDF)
	}
	if (f.KDF == kdfArgon2) != s.passphrase {
		want := "a key file (identity_key_file)"
		if f.KDF == kdfArgon2 {
			want = "a passphrase (identity_passphrase)"
		}
		return nil, fmt.Errorf("identity file %s is sealed by %s, not by the %s given", path, want, s.source)
	}
	kek, err := identityKEK(s, &f)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(f.Data) < ns+aead.Overhead() {
		return nil, fmt.Errorf("identity file %s: sealed key too short", path)
	}
	raw, err := aead.Open(nil, f.Data[:ns], f.Data[ns:], identityAD)
	if err != nil {
		return nil, fmt.Errorf("identity file %s does not open with the %s (wrong passphrase or key file)", path, s.source)
	}
	priv, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	id := &Identity{priv: priv, source: "identity file " + path}
	if rc, err := ParseRecipient(f.Recipient); err != nil || !rc.pub.Equal(priv.PublicKey()) {
		return nil, fmt.Errorf("identity file %s: its recipient does not match its key", path)
	}
	return id, nil
}

// DataKeyConfig is the public half of the first data key, in the config
// of a public-key repository: what writers seal to, and the root of trust
// of later data keys.
type DataKeyConfig struct {
	ID     string `json:"id"`     // keyID(Public)
	Public []byte `json:"public"` // X25519
	Verify []byte `json:"verify"` // Ed25519: signs the next data key
}

// dataKey is one data key: its public halves, trusted, and its private
// halves once an identity unwrapped them.
type dataKey struct {
	id     string
	seq    int
	pub    *ecdh.PublicKey
	verify ed25519.PublicKey
	priv   *ecdh.PrivateKey   // nil until unwrapped
	sign   ed25519.PrivateKey // nil until unwrapped
	seed   []byte             // nil until unwrapped; Rewrap wraps it anew
}

// deriveDataKey expands a data key's 32-byte seed into its X25519 and
// Ed25519 keys.
func deriveDataKey(seed []byte) (*ecdh.PrivateKey, ed25519.PrivateKey, error) {
	x, err := hkdf.Key(sha256.New, seed, nil, "lifeboat data key x25519 v1", 32)
	if err != nil {
		return nil, nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(x)
	if err != nil {
		return nil, nil, err
	}
	e, err := hkdf.Key(sha256.New, seed, nil, "lifeboat data key ed25519 v1", ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	return priv, ed25519.NewKeyFromSeed(e), nil
}

// newDataKey makes a data key from a fresh seed.
func newDataKey(seq int) (*dataKey, []byte, error) {
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, err
	}
	priv, sign, err := deriveDataKey(seed)
	if err != nil {
		return nil, nil, err
	}
	dk := &dataKey{id: keyID(priv.PublicKey().Bytes()), seq: seq, pub: priv.PublicKey(),
		verify: sign.Public().(ed25519.PublicKey), priv: priv, sign: sign}
	return dk, seed, nil
}

func (dk *dataKey) config() *DataKeyConfig {
	return &DataKeyConfig{ID: dk.id, Public: dk.pub.Bytes(), Verify: dk.verify}
}

// dataKeyFromConfig checks the config's data key.
func dataKeyFromConfig(c *DataKeyConfig) (*dataKey, error) {
	pub, err := ecdh.X25519().NewPublicKey(c.Public)
	if err != nil || len(c.Verify) != ed25519.PublicKeySize || keyID(c.Public) != c.ID {
		return nil, fmt.Errorf("config: malformed data_key: %w", ErrCorrupt)
	}
	return &dataKey{id: c.ID, seq: 1, pub: pub, verify: ed25519.PublicKey(c.Verify)}, nil
}

// sealTo seals plain to the X25519 public key pub, ephemeral-static: a
// fresh key pair per call, so the key K is used once (hence the zero
// nonce) and nothing the sealer keeps can open it again. It appends
// ephemeral public key (32) || ciphertext || tag (16) to dst.
func sealTo(dst []byte, pub *ecdh.PublicKey, info string, plain, ad []byte) ([]byte, error) {
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	aead, err := sealedAEAD(eph, eph.PublicKey(), pub, info)
	if err != nil {
		return nil, err
	}
	dst = append(dst, eph.PublicKey().Bytes()...)
	return aead.Seal(dst, zeroNonce[:], plain, ad), nil
}

var zeroNonce [12]byte

// sealedAEAD derives the AES-256-GCM key of one sealing: HKDF-SHA256 of
// the X25519 shared secret, salted with both public keys.
func sealedAEAD(priv *ecdh.PrivateKey, ephPub, pub *ecdh.PublicKey, info string) (cipher.AEAD, error) {
	shared, err := priv.ECDH(peerOf(priv, ephPub, pub))
	if err != nil {
		return nil, err
	}
	salt := append(append(make([]byte, 0, 64), ephPub.Bytes()...), pub.Bytes()...)
	k, err := hkdf.Key(sha256.New, shared, salt, info, 32)
	if err != nil {
		return nil, err
	}
	return newGCM(k)
}

// peerOf is the other side of an exchange: the static key for the
// sealer (who holds the ephemeral private key), the ephemeral key for the
// opener.
func peerOf(priv *ecdh.PrivateKey, ephPub, pub *ecdh.PublicKey) *ecdh.PublicKey {
	if priv.PublicKey().Equal(ephPub) {
		return pub
	}
	return ephPub
}

// openFrom opens what sealTo sealed, with the static private key.
func openFrom(dst []byte, priv *ecdh.PrivateKey, info string, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < 32+16 {
		return nil, fmt.Errorf("sealed data too short (%d bytes): %w", len(sealed), ErrCorrupt)
	}
	eph, err := ecdh.X25519().NewPublicKey(sealed[:32])
	if err != nil {
		return nil, fmt.Errorf("ephemeral key: %v: %w", err, ErrCorrupt)
	}
	aead, err := sealedAEAD(priv, eph, priv.PublicKey(), info)
	if err != nil {
		return nil, fmt.Errorf("key exchange: %v: %w", err, ErrCorrupt)
	}
	out, err := aead.Open(dst, zeroNonce[:], sealed[32:], ad)
	if err != nil {
		return nil, fmt.Errorf("authentication failed: %w", ErrCorrupt)
	}
	return out, nil
}

// HKDF infos of the three uses of sealTo.
const (
	infoFrame = "lifeboat data frame v1"
	infoNamed = "lifeboat named object v1"
	infoWrap  = "lifeboat data key wrap v1"
)

// frameAD is the additional data of a sealed data frame.
var frameAD = []byte("lifeboat data frame")

// sealedFrameOverhead is what sealing to a data key adds to a frame: the
// data key's ID (8), the ephemeral key (32) and the tag (16).
const sealedFrameOverhead = 8 + 32 + 16

// keyIDBytes is the binary form of a key ID, as stored in sealed frames.
func keyIDBytes(id string) []byte {
	b, _ := hex.DecodeString(id)
	return b
}

// wrapName is the object holding data key dk's seed wrapped to
// recipient rc.
func wrapName(dataKeyID, recipientID string) string {
	return "recipients/" + dataKeyID + "-" + recipientID
}

// wrapFormat is the payload of a recipients/ object.
type wrapFormat struct {
	DataKey   string    `json:"data_key"`
	Recipient string    `json:"recipient"`
	Created   time.Time `json:"created"`
	Wrapped   []byte    `json:"wrapped"` // sealTo(recipient, infoWrap, seed, wrapAD)
}

func wrapAD(dataKeyID, recipientID string) []byte {
	return []byte("lifeboat data key wrap\x00" + dataKeyID + "\x00" + recipientID)
}

// wrapSeed builds the recipients/ object that gives rc the data key
// seed.
func wrapSeed(dk *dataKey, seed []byte, rc Recipient) (string, []byte, error) {
	w, err := sealTo(nil, rc.pub, infoWrap, seed, wrapAD(dk.id, rc.ID()))
	if err != nil {
		return "", nil, err
	}
	payload, err := json.Marshal(wrapFormat{DataKey: dk.id, Recipient: rc.String(), Created: time.Now().UTC(), Wrapped: w})
	if err != nil {
		return "", nil, err
	}
	return wrapName(dk.id, rc.ID()), payload, nil
}

// dataKeyObject is the payload of a datakeys/ object: a data key after
// the first, signed by the data key before it.
type dataKeyObject struct {
	ID        string    `json:"id"`
	Seq       int       `json:"seq"`
	Prev      string    `json:"prev"`
	Public    []byte    `json:"public"`
	Verify    []byte    `json:"verify"`
	Created   time.Time `json:"created"`
	Signature []byte    `json:"signature"` // Ed25519 by Prev's verify key over signedBytes
}

func (o *dataKeyObject) signedBytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "lifeboat data key v1\n%s\n%d\n%s\n", o.ID, o.Seq, o.Prev)
	b.WriteString(base64.StdEncoding.EncodeToString(o.Public) + "\n")
	b.WriteString(base64.StdEncoding.EncodeToString(o.Verify) + "\n")
	return b.Bytes()
}

// dataKeyName is where a data key after the first is published.
func dataKeyName(id string) string { return "datakeys/" + id }

// sealedMagic starts the payload of a named object sealed to a data key.
var sealedMagic = []byte("LBD1")

// sealedNamedHeader is the length of the fields before the ephemeral key:
// magic, content MAC, data key ID.
const sealedNamedHeader = 4 + 32 + 8
