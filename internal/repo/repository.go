// Package repo is Lifeboat's repository format: content-addressed blobs,
// compressed and encrypted in frames, gathered into pack files with an
// index; trees of file nodes; snapshot manifests; standalone WAL objects;
// keys and locks. The format is versioned and described in docs/FORMAT.md;
// this package is the only code that knows it.
package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// formatVersion is the first repository format, and the format of key
// files, identities and snapshots.
const formatVersion = 1

// compactFormatVersion is the config version of repositories made since
// blob IDs became 16-byte keyed BLAKE3 (FORMAT.md §4.1): version 1 with
// compact IDs. compactPublicKeyFormatVersion is version 2 with them. A
// reader that knows only versions 1 and 2 refuses both rather than read
// IDs of the wrong length.
const (
	compactFormatVersion          = 3
	compactPublicKeyFormatVersion = 4
)

const configName = "config"

// DefaultBlockSize is the block size of new repositories: one PostgreSQL
// page, so an incremental backup stores exactly the pages that changed.
const DefaultBlockSize = 8 << 10

// Config is the repository's sealed configuration object.
type Config struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	BlockSize int       `json:"block_size"` // default fixed block size for file data
	PackSize  int       `json:"pack_size"`  // target pack size in bytes
	FrameSize int       `json:"frame_size"` // target raw bytes per compressed frame
	// DataKey is set in the public-key mode (version 2): backup contents
	// are sealed to it (recipient.go, docs/FORMAT.md §12).
	DataKey *DataKeyConfig `json:"data_key,omitempty"`
}

// compactIDs reports whether blob IDs are 16-byte keyed BLAKE3
// (versions 3 and 4) rather than 32-byte HMAC-SHA256 (versions 1 and 2).
func (c Config) compactIDs() bool { return c.Version >= compactFormatVersion }

// InitOptions shape a new repository.
type InitOptions struct {
	BlockSize int // 0: DefaultBlockSize
	// Recipient, when set, makes a public-key repository: backup contents
	// are sealed so that only the recipient's identity reads them.
	Recipient *Recipient
	// firstFormat makes a repository of the first format (32-byte
	// HMAC-SHA256 blob IDs), as earlier versions did; for tests that
	// check such repositories still work.
	firstFormat bool
}

// Repository is an open repository. It is safe for concurrent use. Close
// ends it, and closes its backend.
type Repository struct {
	be     storage.Backend
	mk     *masterKey
	keyObj string // the key object that opened the repository
	crypt  *crypter
	cfg    Config
	log    *slog.Logger
	Clock  func() time.Time
	Holder string          // who takes locks ("host:pid"), for messages
	life   *lifetime       // shared by copies of the struct
	met    *metObjects     // unauthentic objects met; shared likewise
	vers   *versionState   // earlier versions read instead (versions.go); shared likewise
	rcp    *recipientState // data keys of the public-key mode; nil in the symmetric mode
	memo   *sync.Map       // Memo's facts; shared likewise
}

// Init creates a repository on be, sealed by secret s. It refuses when the
// backend already holds a repository.
func Init(ctx context.Context, be storage.Backend, s Secret, opts InitOptions) (*Config, error) {
	if _, err := be.Stat(ctx, configName); err == nil {
		return nil, fmt.Errorf("%s already holds a repository", be.Location())
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("check %s: %w", be.Location(), err)
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 8<<10 || bs > 1<<20 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("block size %d: want a power of two from 8 KiB to 1 MiB", bs)
	}
	mk, err := newMasterKey()
	if err != nil {
		return nil, err
	}
	c, err := newCrypter(mk)
	if err != nil {
		return nil, err
	}
	version := compactFormatVersion
	if opts.firstFormat {
		version = formatVersion
	} else {
		c.useCompactIDs(mk)
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return nil, err
	}
	cfg := Config{
		Version:   version,
		ID:        hex.EncodeToString(idb),
		Created:   time.Now().UTC(),
		BlockSize: bs,
		PackSize:  16 << 20,
		FrameSize: 1 << 20,
	}
	// The key goes first: a config without a key would be a repository
	// nobody can open, while a key without config is simply not yet a
	// repository and Init can run again.
	name, data, err := wrapKey(s, mk)
	if err != nil {
		return nil, err
	}
	if err := be.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, fmt.Errorf("store key: %w", err)
	}
	if opts.Recipient != nil {
		if err := initRecipient(ctx, be, c, &cfg, *opts.Recipient); err != nil {
			return nil, err
		}
	}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sealed := c.sealObject(configName, plain)
	if err := be.Put(ctx, configName, bytes.NewReader(sealed), int64(len(sealed))); err != nil {
		return nil, fmt.Errorf("store config: %w", err)
	}
	return &cfg, nil
}

// Open opens the repository on be with secret s. The repository owns be
// from then on: Close closes it. When Open fails, be stays the caller's.
func Open(ctx context.Context, be storage.Backend, s Secret, log *slog.Logger) (*Repository, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mk, keyName, err := findMasterKey(ctx, be, s, log)
	if err != nil {
		return nil, err
	}
	c, err := newCrypter(mk)
	if err != nil {
		return nil, err
	}
	r := &Repository{be: be, mk: mk, keyObj: keyName, crypt: c, log: log, Clock: time.Now, life: &lifetime{}, memo: &sync.Map{},
		met: &metObjects{objects: map[string]metObject{}}, vers: newVersionState(be)}
	plain, err := r.readObject(ctx, configName, maxConfigSize, func(data []byte) ([]byte, error) {
		return c.openObject(configName, data)
	})
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s has keys but no config (an interrupted init? run `lifeboat repo init` again): %w", be.Location(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("parse config: %v: %w", err, ErrCorrupt)
	}
	switch {
	case (cfg.Version == formatVersion || cfg.Version == compactFormatVersion) && cfg.DataKey == nil:
	case (cfg.Version == publicKeyFormatVersion || cfg.Version == compactPublicKeyFormatVersion) && cfg.DataKey != nil:
	default:
		return nil, fmt.Errorf("repository format version %d is not supported (this lifeboat reads versions %d and %d, and %d and %d with a data_key)",
			cfg.Version, formatVersion, compactFormatVersion, publicKeyFormatVersion, compactPublicKeyFormatVersion)
	}
	if cfg.compactIDs() {
		c.useCompactIDs(mk)
	}
	r.cfg = cfg
	if cfg.DataKey != nil {
		if err := r.loadDataKeys(ctx); err != nil {
			return nil, fmt.Errorf("read data keys: %w", err)
		}
	}
	return r, nil
}

// Memo returns what load returned for key the first time it succeeded
// on this open repository, calling it until it does. It is for facts
// read from objects that never change once stored authentic (a cluster's
// identity), which a long-running process such as serve would otherwise
// read again for every WAL segment; never for what expiry may remove.
func (r *Repository) Memo(key string, load func() (any, error)) (any, error) {
	if v, ok := r.memo.Load(key); ok {
		return v, nil
	}
	v, err := load()
	if err != nil {
		return nil, err
	}
	v, _ = r.memo.LoadOrStore(key, v)
	return v, nil
}

// ChunkerSeed seeds the content-defined chunker of streams stored in this
// repository (and its copies).
func (r *Repository) ChunkerSeed() []byte { return r.crypt.chunkerSeed() }

// Config returns the repository configuration.
func (r *Repository) Config() Config { return r.cfg }

// Backend is the storage the repository lives on. The repository owns it:
// it is closed by Close, not by the caller.
func (r *Repository) Backend() storage.Backend { return r.be }

// Location names the repository for messages.
func (r *Repository) Location() string { return r.be.Location() }

// putFreshObject seals payload and stores it under name, a name this
// process chose at random: an existing object can only be its own earlier
// attempt, which a retry found already stored.
func (r *Repository) putFreshObject(ctx context.Context, name string, payload []byte) error {
	sealed := r.crypt.sealObject(name, payload)
	if err := r.be.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed))); err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("store %s: %w", name, err)
	}
	return nil
}

// putContentObject seals payload bound to its kind and stores it under
// kind/<SHA-256 of the sealed bytes>, so the name proves the content.
func (r *Repository) putContentObject(ctx context.Context, kind string, payload []byte) (ID, error) {
	sealed := r.crypt.sealObject(kind, payload)
	id := hashObject(sealed)
	name := kind + "/" + id.String()
	// The name is the hash of these very bytes: if it exists (a retried
	// write whose first attempt landed), what is stored is identical.
	if err := r.be.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed))); err != nil && !errors.Is(err, storage.ErrExists) {
		return id, fmt.Errorf("store %s: %w", name, err)
	}
	return id, nil
}

func damaged(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, storage.ErrDamaged)
}

// damagedInTransit logs a range read that failed its check before it is
// read again (see readVerified).
func (r *Repository) damagedInTransit(what string, err error) {
	r.log.Info("read failed its check; reading it again", "object", what, "err", err)
}

// listNames returns the names of the objects under prefix, in order.
func (r *Repository) listNames(ctx context.Context, prefix string) ([]string, error) {
	return listNames(ctx, r.be, prefix)
}

func listNames(ctx context.Context, be storage.Backend, prefix string) ([]string, error) {
	var names []string
	if err := be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		names = append(names, oi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %s: %w", strings.TrimSuffix(prefix, "/"), err)
	}
	return names, nil
}
