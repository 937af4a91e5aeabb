package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/hkdf"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrWrongKey is returned when no key object in the repository opens with
// the key file or passphrase given.
var ErrWrongKey = errors.New("wrong key")

// Secret is what opens a repository: the contents of a key file or a
// passphrase. It never prints its material.
type Secret struct {
	material   []byte
	passphrase bool
	source     string
}

// String names the secret's origin, never its content.
func (s Secret) String() string { return s.source }

// GoString keeps %#v from printing the material.
func (s Secret) GoString() string { return "repo.Secret(" + s.source + ")" }

// Passphrase makes a Secret from a passphrase, which is stretched with
// Argon2id before use.
func Passphrase(p string) (Secret, error) {
	if len(p) < 8 {
		return Secret{}, errors.New("passphrase too short: use at least 8 characters")
	}
	return Secret{material: []byte(p), passphrase: true, source: "passphrase"}, nil
}

// KeyFile reads a key file. Its content is high-entropy material, so it is
// used through HKDF without a slow KDF: wal-push runs once per segment and
// must not spend a second on key derivation.
func KeyFile(path string) (Secret, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Secret{}, fmt.Errorf("read key file: %w", err)
	}
	data = bytes.TrimSpace(data)
	if len(data) < 32 {
		return Secret{}, fmt.Errorf("key file %s holds %d bytes: want at least 32 (create one with `lifeboat repo init`)", path, len(data))
	}
	return Secret{material: data, source: "key file " + path}, nil
}

// GenerateKeyFile writes a new random key file (64 hex digits), mode 0600,
// failing if the file exists: overwriting a key would lock out its
// repositories.
func GenerateKeyFile(path string) error {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if err := durable.WriteNew(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	return nil
}

// argon2Params are the Argon2id costs; stored per key so they can be raised
// later without locking out old keys.
type argon2Params struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory_kib"`
	Threads uint8  `json:"threads"`
}

var defaultArgon2 = argon2Params{Time: 2, Memory: 64 * 1024, Threads: 2}

// keyFileFormat is the JSON of a keys/ object: the master key sealed by a
// key-encryption key derived from the user's secret.
type keyFileFormat struct {
	Version int           `json:"version"`
	KDF     string        `json:"kdf"` // "hkdf-sha256" or "argon2id"
	Salt    []byte        `json:"salt"`
	Argon2  *argon2Params `json:"argon2,omitempty"`
	Created time.Time     `json:"created"`
	Host    string        `json:"host,omitempty"`
	Data    []byte        `json:"data"` // sealed masterKey JSON
}

const (
	kdfHKDF   = "hkdf-sha256"
	kdfArgon2 = "argon2id"
)

func deriveKEK(s Secret, kf *keyFileFormat) ([]byte, error) {
	switch kf.KDF {
	case kdfArgon2:
		if kf.Argon2 == nil {
			return nil, fmt.Errorf("argon2id key without parameters: %w", ErrCorrupt)
		}
		p := kf.Argon2
		return argon2.IDKey(s.material, kf.Salt, p.Time, p.Memory, p.Threads, 32), nil
	case kdfHKDF:
		kek := make([]byte, 32)
		if _, err := io.ReadFull(hkdf.New(sha256.New, s.material, kf.Salt, []byte("lifeboat key-encryption key v1")), kek); err != nil {
			return nil, err
		}
		return kek, nil
	}
	return nil, fmt.Errorf("unknown key derivation %q: %w", kf.KDF, ErrCorrupt)
}

// wrapKey builds a keys/ object for secret s around master key mk.
func wrapKey(s Secret, mk *masterKey) (name string, data []byte, err error) {
	kf := &keyFileFormat{Version: formatVersion, Salt: make([]byte, 32), Created: time.Now().UTC()}
	kf.Host, _ = os.Hostname()
	if _, err := rand.Read(kf.Salt); err != nil {
		return "", nil, err
	}
	if s.passphrase {
		kf.KDF = kdfArgon2
		p := defaultArgon2
		kf.Argon2 = &p
	} else {
		kf.KDF = kdfHKDF
	}
	kek, err := deriveKEK(s, kf)
	if err != nil {
		return "", nil, err
	}
	aead, err := newGCM(kek)
	if err != nil {
		return "", nil, err
	}
	plain, err := json.Marshal(mk)
	if err != nil {
		return "", nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, err
	}
	kf.Data = aead.Seal(nonce, nonce, plain, []byte("lifeboat master key"))
	data, err = json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", nil, err
	}
	return "keys/" + hashObject(data).String(), data, nil
}

// unwrapKey opens one keys/ object with s. It returns ErrWrongKey when the
// secret does not fit, and ErrCorrupt when the object is malformed.
func unwrapKey(s Secret, data []byte) (*masterKey, error) {
	var kf keyFileFormat
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("parse key: %v: %w", err, ErrCorrupt)
	}
	if kf.Version != formatVersion {
		return nil, fmt.Errorf("key format version %d is not supported (this lifeboat reads version %d)", kf.Version, formatVersion)
	}
	// A passphrase never opens a key-file key and vice versa; skipping the
	// mismatch saves an Argon2 run per key.
	if (kf.KDF == kdfArgon2) != s.passphrase {
		return nil, ErrWrongKey
	}
	kek, err := deriveKEK(s, &kf)
	if err != nil {
		return nil, err
	}
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(kf.Data) < ns {
		return nil, fmt.Errorf("key data too short: %w", ErrCorrupt)
	}
	plain, err := aead.Open(nil, kf.Data[:ns], kf.Data[ns:], []byte("lifeboat master key"))
	if err != nil {
		return nil, ErrWrongKey
	}
	var mk masterKey
	if err := json.Unmarshal(plain, &mk); err != nil {
		return nil, fmt.Errorf("parse master key: %v: %w", err, ErrCorrupt)
	}
	return &mk, nil
}

// AddKey stores a further key object for secret s, so that s opens the
// repository too. Existing keys keep working: this is how keys are rotated
// without losing access to old backups.
func (r *Repository) AddKey(ctx context.Context, s Secret) (string, error) {
	name, data, err := wrapKey(s, r.mk)
	if err != nil {
		return "", err
	}
	// Named by the hash of its bytes: an existing object is identical.
	if err := r.be.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil && !errors.Is(err, storage.ErrExists) {
		return "", fmt.Errorf("store key: %w", err)
	}
	return name, nil
}

// findMasterKey tries every key object until one opens with s.
func findMasterKey(ctx context.Context, be storage.Backend, s Secret) (*masterKey, error) {
	names, err := listNames(ctx, be, "keys/")
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%s is not a lifeboat repository (no keys/; run `lifeboat repo init`): %w", be.Location(), storage.ErrNotFound)
	}
	var damaged []error
	for _, n := range names {
		data, err := storage.ReadAll(ctx, be, n)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", n, err)
		}
		mk, err := unwrapKey(s, data)
		if err == nil {
			return mk, nil
		}
		if !errors.Is(err, ErrWrongKey) {
			damaged = append(damaged, fmt.Errorf("key %s: %w", n, err))
		}
	}
	if len(damaged) > 0 {
		return nil, fmt.Errorf("no key in %s opens with the %s (and %d key objects are unreadable: %v): %w",
			be.Location(), s.source, len(damaged), errors.Join(damaged...), ErrWrongKey)
	}
	return nil, fmt.Errorf("none of the %d keys in %s opens with the %s: %w", len(names), be.Location(), s.source, ErrWrongKey)
}
