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
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	// legacy marks a key file in the format accepted before key files had
	// to be 64 hex digits: it still opens the repositories it opened, but
	// no new key object is made with it.
	legacy bool
	source string
	// cacheDir, when set, holds the host-local key cache (keycache.go).
	cacheDir string
}

// String names the secret's origin, never its content.
func (s Secret) String() string { return s.source }

// GoString keeps %#v from printing the material.
func (s Secret) GoString() string { return "repo.Secret(" + s.source + ")" }

// Legacy reports whether s is a key file in the old format (32 or more
// characters that are not 64 hex digits): see KeyFile.
func (s Secret) Legacy() bool { return s.legacy }

// Passphrase makes a Secret from a passphrase, which is stretched with
// Argon2id before use.
func Passphrase(p string) (Secret, error) {
	if len(p) < 8 {
		return Secret{}, errors.New("passphrase too short: use at least 8 characters")
	}
	return Secret{material: []byte(p), passphrase: true, source: "passphrase"}, nil
}

// keyFileHexDigits is the length of a key file: 64 hex digits, a 256-bit
// key.
const keyFileHexDigits = 64

// maxKeyFileSize bounds what KeyFile reads, so that a key_file pointing at
// a device or a large file by mistake fails instead of filling memory.
const maxKeyFileSize = 1 << 20

// KeyFile reads a key file: 64 hex digits (a 256-bit key), with white
// space around them ignored. Its content is high-entropy material, so it
// is used through HKDF without a slow KDF: wal-push runs once per segment
// and must not spend a second on key derivation.
//
// Key files written before this rule could hold any 32 or more
// characters, used unstretched. Such a file is still accepted so that the
// repositories it opens stay readable (refusing it would stop wal-push on
// upgrade, and PostgreSQL would keep WAL until its disk fills), but it is
// marked Legacy: Open warns on every use, and no new key object is made
// with it (Init, InitCopy and AddKey refuse it).
func KeyFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, fmt.Errorf("read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return Secret{}, fmt.Errorf("read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return Secret{}, fmt.Errorf("key file %s is larger than %d bytes: want 64 hex digits", path, maxKeyFileSize)
	}
	data = bytes.TrimSpace(data)
	s := Secret{material: data, source: "key file " + path}
	if isKeyHex(data) {
		return s, nil
	}
	if len(data) < 32 {
		return Secret{}, fmt.Errorf("key file %s holds %d bytes: want 64 hex digits, a 256-bit key (`lifeboat repo init` creates one)", path, len(data))
	}
	s.legacy = true
	return s, nil
}

// isKeyHex reports whether b is exactly 64 hex digits.
func isKeyHex(b []byte) bool {
	if len(b) != keyFileHexDigits {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
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

// Bounds on the Argon2id costs a key object may ask for. A key object is
// read before anything authenticates it, and anyone who can put an object
// into keys/ chooses its costs: without bounds, "threads": 0 makes the
// Argon2 library panic, and a huge memory or time exhausts the host or
// hangs every command. The ceilings leave four times the default memory
// and five times its passes for keys made with raised costs; docs/FORMAT.md
// lists them.
const (
	argon2MinTime      = 1
	argon2MaxTime      = 10
	argon2MinMemoryKiB = 8 << 10   // 8 MiB
	argon2MaxMemoryKiB = 256 << 10 // 256 MiB
	argon2MinThreads   = 1
	argon2MaxThreads   = 16
)

func (p *argon2Params) check() error {
	switch {
	case p.Time < argon2MinTime || p.Time > argon2MaxTime:
		return fmt.Errorf("argon2 time %d is outside %d..%d", p.Time, argon2MinTime, argon2MaxTime)
	case p.Memory < argon2MinMemoryKiB || p.Memory > argon2MaxMemoryKiB:
		return fmt.Errorf("argon2 memory_kib %d is outside %d..%d", p.Memory, argon2MinMemoryKiB, argon2MaxMemoryKiB)
	case p.Threads < argon2MinThreads || p.Threads > argon2MaxThreads:
		return fmt.Errorf("argon2 threads %d is outside %d..%d", p.Threads, argon2MinThreads, argon2MaxThreads)
	}
	return nil
}

// maxKeyObjectSize bounds what is read of a key object. A genuine one is
// about 500 bytes; a planted one may be any size.
const maxKeyObjectSize = 64 << 10

// keySaltSize is the length of a key object's salt.
const keySaltSize = 32

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

// keyAD is the additional data of a key object's sealed master key.
var keyAD = []byte("lifeboat master key")

// errBadKeyObject marks a key object that fails the checks made before any
// key derivation: it is skipped, never tried.
var errBadKeyObject = errors.New("bad key object")

// parseKeyObject checks a keys/ object against its name and the format's
// bounds, before anything is derived from it: its name must be the SHA-256
// of its bytes, its costs within bounds, its fields well formed. Errors
// match errBadKeyObject (and ErrCorrupt).
func parseKeyObject(name string, data []byte) (*keyFileFormat, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w (%w)", fmt.Sprintf(format, args...), errBadKeyObject, ErrCorrupt)
	}
	id, err := ParseID(strings.TrimPrefix(name, "keys/"))
	if err != nil || !strings.HasPrefix(name, "keys/") {
		return nil, bad("name is not keys/ and a SHA-256")
	}
	if hashObject(data) != id {
		return nil, bad("content does not match its name (the name must be the SHA-256 of the bytes)")
	}
	var kf keyFileFormat
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, bad("parse: %v", err)
	}
	if kf.Version != formatVersion {
		return nil, bad("format version %d is not supported (this lifeboat reads version %d)", kf.Version, formatVersion)
	}
	if len(kf.Salt) != keySaltSize {
		return nil, bad("salt of %d bytes, want %d", len(kf.Salt), keySaltSize)
	}
	switch kf.KDF {
	case kdfHKDF:
	case kdfArgon2:
		if kf.Argon2 == nil {
			return nil, bad("argon2id key without parameters")
		}
		if err := kf.Argon2.check(); err != nil {
			return nil, bad("%v", err)
		}
	default:
		return nil, bad("unknown key derivation %q", kf.KDF)
	}
	if len(kf.Data) < 12+16 {
		return nil, bad("sealed master key too short (%d bytes)", len(kf.Data))
	}
	return &kf, nil
}

// deriveKEK derives the key-encryption key of kf from s. kf has passed
// parseKeyObject (or was made by wrapKey), so its costs are bounded.
func deriveKEK(s Secret, kf *keyFileFormat) ([]byte, error) {
	switch kf.KDF {
	case kdfArgon2:
		if kf.Argon2 == nil || kf.Argon2.check() != nil {
			return nil, fmt.Errorf("argon2id key without valid parameters: %w", ErrCorrupt)
		}
		p := kf.Argon2
		argon2Runs.Add(1)
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

// errLegacyKeyFile refuses to make a new key object with a key file in the
// old format.
func errLegacyKeyFile(s Secret) error {
	return fmt.Errorf("%s is not 64 hex digits: new keys are made only from a 256-bit key file "+
		"(`lifeboat repo init` and `lifeboat repo add-key` create one at a path that does not exist)", s.source)
}

// wrapKey builds a keys/ object for secret s around master key mk.
func wrapKey(s Secret, mk *masterKey) (name string, data []byte, err error) {
	if s.legacy {
		return "", nil, errLegacyKeyFile(s)
	}
	kf := &keyFileFormat{Version: formatVersion, Salt: make([]byte, keySaltSize), Created: time.Now().UTC()}
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
	kf.Data = aead.Seal(nonce, nonce, plain, keyAD)
	data, err = json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", nil, err
	}
	return "keys/" + hashObject(data).String(), data, nil
}

// unwrapKey opens a checked key object with s. It returns ErrWrongKey when
// the secret does not fit, and ErrCorrupt when what it sealed is malformed.
func unwrapKey(s Secret, kf *keyFileFormat) (*masterKey, error) {
	// A passphrase never opens a key-file key and vice versa; skipping the
	// mismatch saves an Argon2 run per key.
	if (kf.KDF == kdfArgon2) != s.passphrase {
		return nil, ErrWrongKey
	}
	kek, err := deriveKEK(s, kf)
	if err != nil {
		return nil, err
	}
	return unwrapWithKEK(kek, kf)
}

// unwrapWithKEK opens a checked key object with its key-encryption key.
func unwrapWithKEK(kek []byte, kf *keyFileFormat) (*masterKey, error) {
	aead, err := newGCM(kek)
	if err != nil {
		return nil, err
	}
	ns := aead.NonceSize()
	if len(kf.Data) < ns+aead.Overhead() {
		return nil, fmt.Errorf("key data too short: %w", ErrCorrupt)
	}
	plain, err := aead.Open(nil, kf.Data[:ns], kf.Data[ns:], keyAD)
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
// without losing access to old backups. A key file in the old format
// (Secret.Legacy) is refused.
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

// KeyName is the key object the repository was opened with.
func (r *Repository) KeyName() string { return r.keyObj }

// readKeyObject reads a key object, refusing one larger than any genuine
// key object can be.
func readKeyObject(ctx context.Context, be storage.Backend, name string) ([]byte, error) {
	rc, err := be.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxKeyObjectSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxKeyObjectSize {
		return nil, fmt.Errorf("larger than %d bytes: %w (%w)", maxKeyObjectSize, errBadKeyObject, ErrCorrupt)
	}
	return data, nil
}

// findMasterKey tries the key objects until one opens with s, and
// returns the master key and the name of the key object that opened. A
// key object that fails its checks (its name, its bounds, its form) is
// skipped and logged, never tried: keys/ may hold objects planted by
// anyone with write access to the store. The cheapest are tried first, so
// planted keys with costly (if bounded) Argon2 parameters never delay the
// genuine ones, which all have the default costs.
func findMasterKey(ctx context.Context, be storage.Backend, s Secret, log *slog.Logger) (*masterKey, string, error) {
	names, err := listNames(ctx, be, "keys/")
	if err != nil {
		return nil, "", err
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%s is not a lifeboat repository (no keys/; run `lifeboat repo init`): %w", be.Location(), storage.ErrNotFound)
	}
	type candidate struct {
		name string
		kf   *keyFileFormat
	}
	var candidates []candidate
	var skipped []string
	skip := func(n string, err error) {
		log.Warn("key object skipped", "object", n, "repository", be.Location(), "err", err)
		skipped = append(skipped, fmt.Sprintf("%s: %v", n, err))
	}
	for _, n := range names {
		data, err := readKeyObject(ctx, be, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed since the listing
		}
		if err != nil && !errors.Is(err, errBadKeyObject) {
			return nil, "", fmt.Errorf("read key %s: %w", n, err)
		}
		var kf *keyFileFormat
		if err == nil {
			kf, err = parseKeyObject(n, data)
		}
		if err != nil {
			skip(n, err)
			continue
		}
		candidates = append(candidates, candidate{n, kf})
	}
	sort.SliceStable(candidates, func(i, j int) bool { return candidates[i].kf.cost() < candidates[j].kf.cost() })
	for _, c := range candidates {
		mk, err := unwrapCached(s, be.Location(), c.name, c.kf, log)
		if err == nil {
			if s.legacy {
				log.Warn("the key file is in the old format (not 64 hex digits) and is used without stretching: "+
					"add a new key with `lifeboat repo add-key` and point key_file at it (docs/storage.md, Key files)",
					"source", s.source, "repository", be.Location())
			}
			return mk, c.name, nil
		}
		if !errors.Is(err, ErrWrongKey) {
			skip(c.name, err)
		}
	}
	if len(skipped) > 0 {
		return nil, "", fmt.Errorf("no key in %s opens with the %s (and %d key objects were skipped: %s): %w",
			be.Location(), s.source, len(skipped), summarise(skipped, 3), ErrWrongKey)
	}
	return nil, "", fmt.Errorf("none of the %d keys in %s opens with the %s: %w", len(names), be.Location(), s.source, ErrWrongKey)
}

// cost orders key objects by the work of deriving their key: HKDF is
// free, Argon2id costs its passes times its memory.
func (kf *keyFileFormat) cost() uint64 {
	if kf.KDF != kdfArgon2 || kf.Argon2 == nil {
		return 0
	}
	return uint64(kf.Argon2.Time) * uint64(kf.Argon2.Memory)
}

// summarise joins the first max items with "; " and counts the rest, to
// keep an error on one line however many items there are.
func summarise(items []string, max int) string {
	if len(items) <= max {
		return strings.Join(items, "; ")
	}
	return fmt.Sprintf("%s; and %d more", strings.Join(items[:max], "; "), len(items)-max)
}
