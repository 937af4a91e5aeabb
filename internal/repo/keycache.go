package repo

import (
	"crypto/hmac"
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
	"sync/atomic"
	"syscall"
)

// A key cache keeps, on this host, the key-encryption key that Argon2id
// derives from a passphrase for one key object, so that a process started
// once per WAL segment does not spend a quarter of a second of CPU on the
// derivation each time. Whoever can read the cache can open the
// repository, as with a key file on this host; docs/FORMAT.md says so. It
// is therefore used only when it is a regular file owned by this user
// with no permission for anyone else, in a directory of the same owner
// that no one else may write.
//
// An entry is bound to the repository's location, to the key object
// (named by the SHA-256 of its bytes, so its salt and costs included) and
// to the passphrase through an HMAC: a changed passphrase, a replaced key
// object or a repository initialised anew at the same place leaves the
// entry unused, and a successful derivation replaces it. Losing the cache
// costs one derivation; it is written without fsync for that reason.

const keyCacheVersion = 1

// argon2Runs counts key derivations from passphrases, for the tests of
// the cache.
var argon2Runs atomic.Int64

// keyCacheFile is the JSON of a key cache entry.
type keyCacheFile struct {
	Version   int    `json:"version"`
	Location  string `json:"location"`
	KeyObject string `json:"key_object"`
	Check     []byte `json:"check"` // HMAC-SHA256(passphrase, location, key object)
	KEK       []byte `json:"kek"`
}

// maxKeyCacheSize bounds what is read of a cache file; a genuine one is
// about 300 bytes.
const maxKeyCacheSize = 4 << 10

// WithKeyCache returns s with a host-local cache of the key derived from
// it kept in dir (created 0700 when missing). Only a passphrase is
// cached: a key file needs no slow derivation.
func (s Secret) WithKeyCache(dir string) Secret {
	if s.passphrase {
		s.cacheDir = dir
	}
	return s
}

// keyCachePath is the cache file of the repository at location.
func (s Secret) keyCachePath(location string) string {
	sum := sha256.Sum256([]byte(location))
	return filepath.Join(s.cacheDir, hex.EncodeToString(sum[:16])+".json")
}

// keyCacheCheck binds an entry to the passphrase, the repository and the
// key object.
func (s Secret) keyCacheCheck(location, keyObject string) []byte {
	m := hmac.New(sha256.New, s.material)
	m.Write([]byte("lifeboat key cache v1\x00" + location + "\x00" + keyObject))
	return m.Sum(nil)
}

// errKeyCacheUnsafe marks a cache that someone other than this user could
// have read or written: it is neither used nor rewritten.
var errKeyCacheUnsafe = errors.New("key cache not private to this user")

// checkPrivate accepts a file (or directory) owned by this user that no one
// else may read or write (directories: write).
func checkPrivate(fi os.FileInfo, dir bool) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information: %w", fi.Name(), errKeyCacheUnsafe)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not this user (%d): %w", fi.Name(), st.Uid, os.Geteuid(), errKeyCacheUnsafe)
	}
	if dir {
		if !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("directory %s has mode %v (others may write it): %w", fi.Name(), fi.Mode(), errKeyCacheUnsafe)
		}
		return nil
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %v (want a regular file, 0600): %w", fi.Name(), fi.Mode(), errKeyCacheUnsafe)
	}
	return nil
}

// loadKeyCache returns the cached key-encryption key for keyObject, or nil
// when there is none, it is stale, or it is unsafe (then logged).
func (s Secret) loadKeyCache(location, keyObject string, log *slog.Logger) []byte {
	if s.cacheDir == "" {
		return nil
	}
	kf, err := s.readKeyCache(location)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			log.Warn("key cache not used; the key is derived from the passphrase", "err", err)
		}
		return nil
	}
	if kf.Version != keyCacheVersion || kf.Location != location || kf.KeyObject != keyObject || len(kf.KEK) != 32 ||
		!hmac.Equal(kf.Check, s.keyCacheCheck(location, keyObject)) {
		return nil // another key object, or another passphrase: stale
	}
	return kf.KEK
}

func (s Secret) readKeyCache(location string) (*keyCacheFile, error) {
	di, err := os.Lstat(s.cacheDir)
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(di, true); err != nil {
		return nil, err
	}
	path := s.keyCachePath(location)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkPrivate(fi, false); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyCacheSize+1))
	if err != nil {
		return nil, err
	}
	var kf keyCacheFile
	if len(data) > maxKeyCacheSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxKeyCacheSize)
	}
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &kf, nil
}

// storeKeyCache records kek for keyObject. Failing to is logged, never an
// error: the cache only saves time.
func (s Secret) storeKeyCache(location, keyObject string, kek []byte, log *slog.Logger) {
	if s.cacheDir == "" {
		return
	}
	if err := s.writeKeyCache(location, keyObject, kek); err != nil {
		log.Warn("key cache not written; the next run derives the key again", "err", err)
	}
}

func (s Secret) writeKeyCache(location, keyObject string, kek []byte) error {
	if err := os.MkdirAll(s.cacheDir, 0o700); err != nil {
		return err
	}
	di, err := os.Lstat(s.cacheDir)
	if err != nil {
		return err
	}
	if err := checkPrivate(di, true); err != nil {
		return err
	}
	data, err := json.Marshal(keyCacheFile{Version: keyCacheVersion, Location: location, KeyObject: keyObject,
		Check: s.keyCacheCheck(location, keyObject), KEK: kek})
	if err != nil {
		return err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(s.cacheDir, ".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, s.keyCachePath(location))
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// unwrapCached opens a checked key object with s, through the key cache
// when s has one: a cached key that opens the object saves the
// derivation, and a derivation that opens it is cached.
func unwrapCached(s Secret, location, name string, kf *keyFileFormat, log *slog.Logger) (*masterKey, error) {
	if s.cacheDir == "" || kf.KDF != kdfArgon2 {
		return unwrapKey(s, kf)
	}
	if kek := s.loadKeyCache(location, name, log); kek != nil {
		if mk, err := unwrapWithKEK(kek, kf); err == nil {
			return mk, nil
		}
		// A cached key that no longer opens its object (the HMAC matched,
		// so this is damage): derive it again below, which rewrites it.
	}
	kek, err := deriveKEK(s, kf)
	if err != nil {
		return nil, err
	}
	mk, err := unwrapWithKEK(kek, kf)
	if err == nil {
		s.storeKeyCache(location, name, kek, log)
	}
	return mk, err
}
