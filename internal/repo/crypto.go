package repo

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// ID names a blob (keyed hash of its plaintext) or an object (plain SHA-256
// of its stored bytes). A compact blob ID (16 bytes, FORMAT.md §4.1) is
// held with its last 16 bytes zero.
type ID [32]byte

// compactIDLen is the stored length of a blob ID in a repository of
// compact format.
const compactIDLen = 16

// compact reports whether id is a compact blob ID. A 32-byte hash whose
// last 16 bytes are all zero turns up with probability 2^-128.
func (id ID) compact() bool { return [16]byte(id[compactIDLen:]) == [16]byte{} && !id.IsZero() }

// String returns the ID in lowercase hex: 32 digits for a compact blob ID,
// 64 otherwise.
func (id ID) String() string {
	if id.compact() {
		return hex.EncodeToString(id[:compactIDLen])
	}
	return hex.EncodeToString(id[:])
}

// Short is the first eight hex digits, for listings.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses a 64-digit hex ID, or a 32-digit compact blob ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 && len(s) != 2*compactIDLen {
		return id, fmt.Errorf("invalid id %q: want 64 hex digits (32 for a compact blob ID)", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid id %q: %w", s, err)
	}
	if len(s) != 64 && !id.compact() {
		return id, fmt.Errorf("invalid id %q: not a blob ID", s)
	}
	return id, nil
}

// MarshalText writes the ID as hex.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText parses hex.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// hashObject names a stored object by the SHA-256 of its bytes, so any
// reader can check an object against its name without the key.
func hashObject(data []byte) ID { return sha256.Sum256(data) }

// ErrCorrupt is returned (wrapped) when stored data fails authentication,
// decompression or its hash check.
var ErrCorrupt = errors.New("repository data is damaged")

// ErrMissing is returned (wrapped) when data a snapshot needs is absent.
var ErrMissing = errors.New("repository data is missing")

// masterKey holds the repository's secret keys. It is generated once at
// init and stored in keys/ wrapped by each user key.
type masterKey struct {
	Encrypt []byte `json:"encrypt"` // AES-256-GCM key for all data
	ID      []byte `json:"id"`      // key of blob IDs (and of the other keyed hashes)
}

func newMasterKey() (*masterKey, error) {
	k := &masterKey{Encrypt: make([]byte, 32), ID: make([]byte, 32)}
	if _, err := rand.Read(k.Encrypt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(k.ID); err != nil {
		return nil, err
	}
	return k, nil
}

// crypter seals and opens data with the master key. Safe for concurrent
// use: the AEAD is stateless and hash states come from pools.
type crypter struct {
	aead cipher.AEAD
	macs sync.Pool // HMAC-SHA256 under the blob-ID key
	// blake3 is set in a repository of compact format: blob IDs are then
	// keyed BLAKE3 cut to 16 bytes rather than HMAC-SHA256.
	blake3   *sync.Pool
	idLen    int // stored length of a blob ID: 32, or 16 when compact
	level    zstd.EncoderLevel
	zencOnce sync.Once
	zenc     *zstd.Encoder
	zdecOnce sync.Once
	zdec     *zstd.Decoder
}

func newCrypter(k *masterKey) (*crypter, error) {
	if len(k.Encrypt) != 32 || len(k.ID) != 32 {
		return nil, fmt.Errorf("master key has wrong length: %w", ErrCorrupt)
	}
	aead, err := newGCM(k.Encrypt)
	if err != nil {
		return nil, err
	}
	idKey := append([]byte(nil), k.ID...)
	// The fastest level: on the reference cluster it stores 2% more than
	// the default level for 40% less CPU, and compression is most of a
	// backup's CPU (profiled). Readers do not depend on the level.
	c := &crypter{aead: aead, level: zstd.SpeedFastest, idLen: len(ID{})}
	c.macs.New = func() any { return hmac.New(sha256.New, idKey) }
	return c, nil
}

// useCompactIDs switches blob IDs to the compact form (FORMAT.md §4.1),
// before any blob is named: keyed BLAKE3 runs at 1.6 times the speed of
// HMAC-SHA256 on 8 KiB blocks here, and every block of a backup and of a
// restore is hashed; 16 bytes halve what IDs cost in packs, the index and
// trees.
func (c *crypter) useCompactIDs(k *masterKey) {
	idKey := append([]byte(nil), k.ID...)
	c.blake3 = &sync.Pool{New: func() any {
		h, _ := blake3.NewKeyed(idKey) // the key is 32 bytes: checked by newCrypter
		return h
	}}
	c.idLen = compactIDLen
}

// chunkerSeed is the seed of the content-defined chunker's gear table:
// derived from the blob-ID key, so copies (which share the key) cut the
// same chunks, and chunk sizes reveal nothing without the key.
func (c *crypter) chunkerSeed() []byte {
	m := c.macs.Get().(hash.Hash)
	defer c.macs.Put(m)
	m.Reset()
	m.Write([]byte("lifeboat/chunker/v1"))
	return m.Sum(nil)
}

// encoder returns the zstd encoder, made on first use: wal-push never
// needs one, and making it costs a short-lived process several
// milliseconds of fresh memory.
func (c *crypter) encoder() *zstd.Encoder {
	c.zencOnce.Do(func() {
		// Frames are compressed independently by the backup workers.
		// EncodeAll takes an encoder from a pool as large as the
		// concurrency, so the pool must match the workers or they take
		// turns. Frames are about 1 MiB: a larger window would cost memory
		// and find nothing more. The options are constants, so NewWriter
		// cannot fail.
		c.zenc, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(c.level), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithWindowSize(2<<20), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	})
	return c.zenc
}

// decoder returns the zstd decoder, made on first use.
func (c *crypter) decoder() *zstd.Decoder {
	c.zdecOnce.Do(func() {
		c.zdec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<31))
	})
	return c.zdec
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// blobID is the keyed hash of a blob's plaintext. Keying it means the IDs
// in an unencrypted listing reveal nothing about the data.
func (c *crypter) blobID(data []byte) ID {
	if c.blake3 == nil {
		return c.mac(data)
	}
	h := c.blake3.Get().(*blake3.Hasher)
	h.Reset()
	h.Write(data)
	var sum [32]byte
	h.Sum(sum[:0])
	c.blake3.Put(h)
	var id ID
	copy(id[:compactIDLen], sum[:])
	if id.IsZero() {
		// Keeps every compact ID recognisable as one (String, ParseID);
		// 16 zero bytes turn up with probability 2^-128.
		id[0] = 1
	}
	return id
}

// mac is HMAC-SHA256 under the blob-ID key, for the keyed hashes that are
// not blob IDs (and for blob IDs in a repository of the first format).
func (c *crypter) mac(data []byte) ID {
	m := c.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	var id ID
	m.Sum(id[:0])
	c.macs.Put(m)
	return id
}

// seal encrypts plaintext as nonce || ciphertext || tag, appended to dst.
// aad binds the ciphertext to where it belongs (an object name).
func (c *crypter) seal(dst, plaintext, aad []byte) []byte {
	nonce := make([]byte, c.aead.NonceSize())
	if _, err := randRead(nonce); err != nil {
		// crypto/rand never fails on Linux; a failure here means the
		// process cannot produce safe nonces at all.
		panic(fmt.Sprintf("read random nonce: %v", err))
	}
	dst = append(dst, nonce...)
	return c.aead.Seal(dst, nonce, plaintext, aad)
}

// randRead fills b from the system's secure random source.
var randRead = rand.Read

// open authenticates and decrypts a sealed buffer.
func (c *crypter) open(dst, sealed, aad []byte) ([]byte, error) {
	ns := c.aead.NonceSize()
	if len(sealed) < ns+c.aead.Overhead() {
		return nil, fmt.Errorf("sealed data too short (%d bytes): %w", len(sealed), ErrCorrupt)
	}
	out, err := c.aead.Open(dst, sealed[:ns], sealed[ns:], aad)
	if err != nil {
		return nil, fmt.Errorf("authentication failed: %w", ErrCorrupt)
	}
	return out, nil
}

// Codec is the compression of a standalone object's payload.
type Codec uint8

// Codecs. zstd compresses better; S2 is several times faster, which is what
// archive_command needs.
const (
	CodecNone Codec = 0
	CodecZstd Codec = 1
	CodecS2   Codec = 2
)

// Standalone objects (config, index, snapshot, WAL) are framed as
// objectMagic || sealed(codec byte || compressed payload). The additional
// data is the object's storage name for named objects (config, WAL), and
// its kind for objects named by their own hash (index, snapshots), so that
// an object moved to another name or kind fails to open.
var objectMagic = []byte("LBO1")

func (c *crypter) sealObject(aad string, payload []byte) []byte {
	return c.sealObjectCodec(aad, payload, CodecZstd)
}

func (c *crypter) sealObjectCodec(aad string, payload []byte, codec Codec) []byte {
	if len(payload) < 512 {
		codec = CodecNone // too small to gain; saves making a compressor
	}
	var z []byte
	switch codec {
	case CodecS2:
		z = s2.Encode(nil, payload)
	case CodecZstd:
		z = c.encoder().EncodeAll(payload, make([]byte, 0, len(payload)/2+64))
	default:
		z = payload
		codec = CodecNone
	}
	plain := make([]byte, 0, 1+len(z))
	plain = append(append(plain, byte(codec)), z...)
	out := make([]byte, 0, len(objectMagic)+len(plain)+c.aead.NonceSize()+c.aead.Overhead())
	out = append(out, objectMagic...)
	return c.seal(out, plain, []byte(aad))
}

func (c *crypter) openObject(aad string, data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, objectMagic) {
		return nil, fmt.Errorf("object %s: not a lifeboat object (bad magic): %w", aad, ErrCorrupt)
	}
	plain, err := c.open(nil, data[len(objectMagic):], []byte(aad))
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", aad, err)
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("object %s: empty payload: %w", aad, ErrCorrupt)
	}
	var out []byte
	switch Codec(plain[0]) {
	case CodecNone:
		out = plain[1:]
	case CodecZstd:
		out, err = c.decoder().DecodeAll(plain[1:], nil)
	case CodecS2:
		out, err = s2.Decode(nil, plain[1:])
	default:
		err = fmt.Errorf("unknown codec %d", plain[0])
	}
	if err != nil {
		return nil, fmt.Errorf("object %s: decompress: %v: %w", aad, err, ErrCorrupt)
	}
	return out, nil
}
