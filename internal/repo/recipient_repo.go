package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// publicKeyFormatVersion is the config version of a public-key
// repository: a reader that does not know the mode refuses it, rather
// than writing contents any key holder could read.
const publicKeyFormatVersion = 2

// frameFlagSealed marks a frame sealed to a data key (§12).
const frameFlagSealed = 2

// recipientState is what a public-key repository knows of its data keys.
// Shared by copies of the Repository struct.
type recipientState struct {
	mu      sync.Mutex
	keys    map[string]*dataKey // trusted: the config's and those signed in a chain from it
	current *dataKey            // what writers seal to: the trusted key with the highest seq
	loader  func() ([]*Identity, error)
	tried   bool // loader ran and wraps were opened
	ids     []*Identity
	err     error // of the loader
}

// PublicKeyMode reports whether the repository seals backup contents to a
// public key, so that reading them needs an identity.
func (r *Repository) PublicKeyMode() bool { return r.rcp != nil }

// DataKeyID is the data key writers seal new contents to; "" in the
// symmetric mode.
func (r *Repository) DataKeyID() string {
	if r.rcp == nil {
		return ""
	}
	r.rcp.mu.Lock()
	defer r.rcp.mu.Unlock()
	return r.rcp.current.id
}

// SetIdentities gives the repository a way to load the identities that
// open its data keys. It is called at most once, on the first read of
// sealed contents, so that a writer never pays for unlocking an identity
// (Argon2id) it does not need.
func (r *Repository) SetIdentities(load func() ([]*Identity, error)) {
	if r.rcp == nil {
		return
	}
	r.rcp.mu.Lock()
	r.rcp.loader = load
	r.rcp.tried = false
	r.rcp.mu.Unlock()
}

// CanReadContents returns nil when the repository's backup contents can
// be read: always in the symmetric mode; in the public-key mode when an
// identity opens at least one data key. Otherwise it says, in one line,
// what is missing. Restores, drills and verify --read-data call it before
// they start.
func (r *Repository) CanReadContents(ctx context.Context) error {
	if r.rcp == nil {
		return nil
	}
	if err := r.unlock(ctx); err != nil {
		return err
	}
	r.rcp.mu.Lock()
	defer r.rcp.mu.Unlock()
	for _, dk := range r.rcp.keys {
		if dk.priv != nil {
			return nil
		}
	}
	return fmt.Errorf("repository %s seals backup contents to a public key, and the identity given (%s) opens none of its data keys: %w",
		r.Location(), identityNames(r.rcp.ids), ErrNoIdentity)
}

func identityNames(ids []*Identity) string {
	var s []string
	for _, id := range ids {
		s = append(s, id.String())
	}
	return strings.Join(s, ", ")
}

// errNeedIdentity is the one-line refusal of a read without an identity.
func (r *Repository) errNeedIdentity() error {
	return fmt.Errorf("repository %s seals backup contents to a public key: reading them needs its identity (the private key); "+
		"set identity_file (with identity_key_file or identity_passphrase) for this repository in the policy (docs/keys.md): %w", r.Location(), ErrNoIdentity)
}

// unlock runs the identity loader once and opens every data key wrapped
// to one of its identities.
func (r *Repository) unlock(ctx context.Context) error {
	st := r.rcp
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.tried {
		if st.err != nil {
			return st.err
		}
		if len(st.ids) == 0 {
			return r.errNeedIdentity()
		}
		return nil
	}
	if st.loader == nil {
		return r.errNeedIdentity()
	}
	ids, err := st.loader()
	if err != nil {
		st.tried, st.err = true, fmt.Errorf("repository %s: %w", r.Location(), err)
		return st.err
	}
	names, err := r.listNames(ctx, "recipients/")
	if err != nil {
		return err
	}
	st.tried, st.ids = true, ids
	if len(ids) == 0 {
		return r.errNeedIdentity()
	}
	for _, n := range names {
		dkID, rcID, ok := strings.Cut(strings.TrimPrefix(n, "recipients/"), "-")
		if !ok {
			continue
		}
		dk := st.keys[dkID]
		if dk == nil || dk.priv != nil {
			continue
		}
		for _, id := range ids {
			if id.Recipient().ID() != rcID {
				continue
			}
			if err := r.openWrap(ctx, n, dk, id); err != nil {
				r.log.Warn("a wrapped data key did not open with the identity", "object", n, "identity", id.String(), "err", err)
			}
		}
	}
	return nil
}

// openWrap opens the recipients/ object name with identity id and keeps
// the data key dk's private halves, after checking they match its
// trusted public halves.
func (r *Repository) openWrap(ctx context.Context, name string, dk *dataKey, id *Identity) error {
	payload, err := r.getObject(ctx, name)
	if err != nil {
		if r.skippable(name, err) {
			return nil
		}
		return err
	}
	var w wrapFormat
	if err := json.Unmarshal(payload, &w); err != nil {
		return fmt.Errorf("parse: %v: %w", err, ErrCorrupt)
	}
	seed, err := openFrom(nil, id.priv, infoWrap, w.Wrapped, wrapAD(dk.id, id.Recipient().ID()))
	if err != nil {
		return err
	}
	priv, sign, err := deriveDataKey(seed)
	if err != nil {
		return err
	}
	if !priv.PublicKey().Equal(dk.pub) || !sign.Public().(ed25519.PublicKey).Equal(dk.verify) {
		return fmt.Errorf("the wrapped key is not data key %s: %w", dk.id, ErrCorrupt)
	}
	dk.priv, dk.sign, dk.seed = priv, sign, seed
	return nil
}

// loadDataKeys reads the data keys of a public-key repository: the
// config's, and every datakeys/ object signed in a chain from it. One
// that does not verify was put there by someone without the identity of
// the key before it (a writer's key seals objects, but signs nothing): it
// is skipped and noted, so that a stolen writer key cannot make other
// writers seal to a key of its choosing.
func (r *Repository) loadDataKeys(ctx context.Context) error {
	root, err := dataKeyFromConfig(r.cfg.DataKey)
	if err != nil {
		return err
	}
	st := &recipientState{keys: map[string]*dataKey{root.id: root}, current: root}
	names, err := r.listNames(ctx, "datakeys/")
	if err != nil {
		return err
	}
	var pending []*dataKeyObject
	pendingName := map[*dataKeyObject]string{}
	for _, n := range names {
		payload, err := r.getObject(ctx, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			if r.skippable(n, err) {
				continue
			}
			return fmt.Errorf("read %s: %w", n, err)
		}
		var o dataKeyObject
		if err := json.Unmarshal(payload, &o); err != nil || dataKeyName(o.ID) != n || keyID(o.Public) != o.ID || len(o.Verify) != ed25519.PublicKeySize {
			r.noteUnauthentic(n, asUnauthentic(fmt.Errorf("malformed data key object: %w", ErrCorrupt)))
			continue
		}
		pending = append(pending, &o)
		pendingName[&o] = n
	}
	accepted := map[*dataKeyObject]bool{}
	for progress := true; progress; {
		progress = false
		for _, o := range pending {
			prev := st.keys[o.Prev]
			if accepted[o] || prev == nil || o.Seq != prev.seq+1 || st.keys[o.ID] != nil {
				continue
			}
			if !ed25519.Verify(prev.verify, o.signedBytes(), o.Signature) {
				continue
			}
			dk, err := dataKeyFromConfig(&DataKeyConfig{ID: o.ID, Public: o.Public, Verify: o.Verify})
			if err != nil {
				continue
			}
			dk.seq = o.Seq
			st.keys[dk.id] = dk
			accepted[o] = true
			progress = true
			if dk.seq > st.current.seq || dk.seq == st.current.seq && dk.id > st.current.id {
				st.current = dk
			}
		}
	}
	for _, o := range pending {
		if !accepted[o] {
			r.noteUnauthentic(pendingName[o], asUnauthentic(fmt.Errorf("data key %s is not signed by the data key before it: %w", o.ID, ErrCorrupt)))
		}
	}
	r.rcp = st
	return nil
}

// keyFor returns the data key a sealed frame or object names, with its
// private half, or why it cannot be had.
func (r *Repository) keyFor(ctx context.Context, kid []byte) (*dataKey, error) {
	if r.rcp == nil {
		return nil, fmt.Errorf("contents sealed to a data key in a repository without data keys: %w", ErrCorrupt)
	}
	id := hex.EncodeToString(kid)
	r.rcp.mu.Lock()
	dk := r.rcp.keys[id]
	r.rcp.mu.Unlock()
	if dk == nil {
		return nil, fmt.Errorf("sealed to data key %s, which the repository does not trust: %w", id, ErrCorrupt)
	}
	// unlock runs the loader once; later calls return what it found.
	if err := r.unlock(ctx); err != nil {
		return nil, err
	}
	r.rcp.mu.Lock()
	defer r.rcp.mu.Unlock()
	if dk.priv == nil {
		return nil, fmt.Errorf("contents sealed to data key %s, which the identity given (%s) does not open (from before a rotation? use the identity of that time): %w",
			id, identityNames(r.rcp.ids), ErrNoIdentity)
	}
	return dk, nil
}

// sealFrame seals a data frame to the current data key:
// keyID(8) || ephemeral public key(32) || AES-256-GCM ciphertext || tag.
func (r *Repository) sealFrame(dst, plain []byte) ([]byte, error) {
	r.rcp.mu.Lock()
	dk := r.rcp.current
	r.rcp.mu.Unlock()
	dst = append(dst, keyIDBytes(dk.id)...)
	return sealTo(dst, dk.pub, infoFrame, plain, frameAD)
}

// openSealedFrame opens a frame sealed to a data key, in place.
func (r *Repository) openSealedFrame(sealed []byte) ([]byte, error) {
	if len(sealed) < sealedFrameOverhead {
		return nil, fmt.Errorf("sealed frame too short: %w", ErrCorrupt)
	}
	dk, err := r.keyFor(context.Background(), sealed[:8])
	if err != nil {
		return nil, err
	}
	return openFrom(sealed[8+32:8+32], dk.priv, infoFrame, sealed[8:], frameAD)
}

// hasData reports whether a frame holds a data blob: such a frame is
// sealed to the data key in the public-key mode, while frames of tree
// blobs stay readable to writers (an incremental backup reads its
// parent's tree).
func hasData(blobs []blobEntry) bool {
	for _, b := range blobs {
		if b.Type == DataBlob {
			return true
		}
	}
	return false
}

// sealsName reports whether the named object name holds backup contents
// sealed to the data key: WAL files, in the public-key mode.
func (r *Repository) sealsName(name string) bool {
	return r.rcp != nil && strings.HasPrefix(name, "wal/")
}

// contentMAC fingerprints a named object's payload under the blob-ID key,
// so that a writer can tell a retried push of the same file from a
// conflict without being able to read what is stored.
func (r *Repository) contentMAC(payload []byte) []byte {
	m := r.crypt.macs.Get().(hash.Hash)
	defer r.crypt.macs.Put(m)
	m.Reset()
	m.Write([]byte("lifeboat/content/v1\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

// sealNamed is the payload stored (sealed again under the master key,
// bound to the storage name) for a named object of contents:
// "LBD1" || contentMAC(32) || keyID(8) || ephemeral key(32) ||
// AES-256-GCM(codec(1) || compressed payload, AD = name) || tag.
func (r *Repository) sealNamed(name string, payload []byte, codec Codec) ([]byte, error) {
	r.rcp.mu.Lock()
	dk := r.rcp.current
	r.rcp.mu.Unlock()
	var z []byte
	switch codec {
	case CodecS2:
		z = make([]byte, 1, 1+s2.MaxEncodedLen(len(payload)))
		z = append(z[:1], s2.Encode(z[1:cap(z)], payload)...)
	case CodecZstd:
		z = r.crypt.encoder().EncodeAll(payload, append(make([]byte, 0, len(payload)/2+64), 0))
	default:
		codec = CodecNone
		z = append(append(make([]byte, 0, 1+len(payload)), 0), payload...)
	}
	z[0] = byte(codec)
	out := make([]byte, 0, sealedNamedHeader+32+len(z)+16)
	out = append(out, sealedMagic...)
	out = append(out, r.contentMAC(payload)...)
	out = append(out, keyIDBytes(dk.id)...)
	return sealTo(out, dk.pub, infoNamed, z, []byte(name))
}

// openNamed opens what sealNamed stored for the named object name.
func (r *Repository) openNamed(ctx context.Context, name string, stored []byte) ([]byte, error) {
	if len(stored) < sealedNamedHeader+32+16+1 || !bytes.HasPrefix(stored, sealedMagic) {
		return nil, fmt.Errorf("object %s: not sealed to a data key: %w", name, ErrCorrupt)
	}
	dk, err := r.keyFor(ctx, stored[4+32:sealedNamedHeader])
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	plain, err := openFrom(nil, dk.priv, infoNamed, stored[sealedNamedHeader:], []byte(name))
	if err != nil {
		return nil, fmt.Errorf("object %s: %w", name, err)
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("object %s: empty payload: %w", name, ErrCorrupt)
	}
	var out []byte
	switch Codec(plain[0]) {
	case CodecNone:
		out = plain[1:]
	case CodecZstd:
		out, err = r.crypt.decoder().DecodeAll(plain[1:], nil)
	case CodecS2:
		out, err = s2.Decode(nil, plain[1:])
	default:
		err = fmt.Errorf("unknown codec %d", plain[0])
	}
	if err != nil {
		return nil, fmt.Errorf("object %s: decompress: %v: %w", name, err, ErrCorrupt)
	}
	if !bytes.Equal(r.contentMAC(out), stored[4:36]) {
		return nil, fmt.Errorf("object %s: content does not match its fingerprint: %w", name, ErrCorrupt)
	}
	return out, nil
}

// samePayload compares what is stored under a named object with what a
// writer is storing again: the plaintexts, or, for contents sealed to a
// data key, their fingerprints.
func (r *Repository) samePayload(name string, old, payload []byte) bool {
	if !r.sealsName(name) {
		return bytes.Equal(old, payload)
	}
	return len(old) >= 36 && len(payload) >= 36 && bytes.HasPrefix(old, sealedMagic) && bytes.Equal(old[4:36], payload[4:36])
}

// syncPrefixes is what Sync copies, in order; a public-key repository's
// data keys and their wraps come first, so that a copy can be read as soon
// as it holds anything.
func (r *Repository) syncPrefixes() []string {
	if r.rcp == nil {
		return syncOrder
	}
	return append([]string{"datakeys/", "recipients/"}, syncOrder...)
}

// initRecipient makes the first data key of a new public-key repository,
// stores its seed wrapped to rc, and records its public halves in cfg.
func initRecipient(ctx context.Context, be storage.Backend, c *crypter, cfg *Config, rc Recipient) error {
	dk, seed, err := newDataKey(1)
	if err != nil {
		return err
	}
	defer clear(seed)
	name, payload, err := wrapSeed(dk, seed, rc)
	if err != nil {
		return err
	}
	sealed := c.sealObject(name, payload)
	if err := be.Put(ctx, name, bytes.NewReader(sealed), int64(len(sealed))); err != nil && !errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("store %s: %w", name, err)
	}
	cfg.Version = publicKeyFormatVersion
	if c.idLen == compactIDLen {
		cfg.Version = compactPublicKeyFormatVersion
	}
	cfg.DataKey = dk.config()
	return nil
}

// copyDataKeys gives a new copy the data keys and their wraps, so that it
// can be read (and written) before its first sync.
func (r *Repository) copyDataKeys(ctx context.Context, dst storage.Backend) error {
	for _, prefix := range []string{"datakeys/", "recipients/"} {
		names, err := r.listNames(ctx, prefix)
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := copyObject(ctx, r.be, dst, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddRecipient starts a new data key, wrapped to rc only: backups from
// now on are sealed to it, and only rc's identity reads them, while what
// was sealed before stays readable with the identities of its time. The
// new key is signed by the current one, so the repository's identity
// must be given (SetIdentities): a writer's key alone cannot add one.
// It returns the new data key's ID.
func (r *Repository) AddRecipient(ctx context.Context, rc Recipient) (string, error) {
	if r.rcp == nil {
		return "", fmt.Errorf("repository %s does not seal contents to a public key (it was not made with `repo init --recipient`)", r.Location())
	}
	if err := r.unlock(ctx); err != nil {
		return "", err
	}
	r.rcp.mu.Lock()
	cur := r.rcp.current
	r.rcp.mu.Unlock()
	if cur.sign == nil {
		return "", fmt.Errorf("the identity given (%s) does not open the current data key %s of %s, which must sign the next: %w",
			identityNames(r.rcp.ids), cur.id, r.Location(), ErrNoIdentity)
	}
	dk, seed, err := newDataKey(cur.seq + 1)
	if err != nil {
		return "", err
	}
	defer clear(seed)
	name, payload, err := wrapSeed(dk, seed, rc)
	if err != nil {
		return "", err
	}
	// The wrap first: a data key that writers seal to must never exist
	// without a way to read what they seal.
	if err := r.putFreshObject(ctx, name, payload); err != nil {
		return "", err
	}
	o := dataKeyObject{ID: dk.id, Seq: dk.seq, Prev: cur.id, Public: dk.pub.Bytes(), Verify: dk.verify, Created: time.Now().UTC()}
	o.Signature = ed25519.Sign(cur.sign, o.signedBytes())
	obj, err := json.Marshal(o)
	if err != nil {
		return "", err
	}
	if err := r.putFreshObject(ctx, dataKeyName(dk.id), obj); err != nil {
		return "", err
	}
	r.rcp.mu.Lock()
	dk.priv, dk.sign = nil, nil // the new recipient's; this process keeps nothing of it
	r.rcp.keys[dk.id] = dk
	r.rcp.current = dk
	r.rcp.mu.Unlock()
	return dk.id, nil
}

// RewrapReport says what Rewrap did.
type RewrapReport struct {
	Wrapped   []string // data keys now wrapped to the new recipient
	Removed   []string // wraps to other recipients deleted
	NotOpened []string // data keys the identity given does not open: left as they were
}

// Rewrap wraps every data key the identity given opens to rc as well,
// without touching a byte of the backups; with removeOthers it then
// deletes the wraps of those keys to every other recipient (a credential
// that may delete is needed), so that an identity that leaked no longer
// opens anything.
func (r *Repository) Rewrap(ctx context.Context, rc Recipient, removeOthers bool) (*RewrapReport, error) {
	if r.rcp == nil {
		return nil, fmt.Errorf("repository %s does not seal contents to a public key", r.Location())
	}
	if err := r.CanReadContents(ctx); err != nil {
		return nil, err
	}
	r.rcp.mu.Lock()
	keys := make([]*dataKey, 0, len(r.rcp.keys))
	for _, dk := range r.rcp.keys {
		keys = append(keys, dk)
	}
	r.rcp.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].seq < keys[j].seq })
	rep := &RewrapReport{}
	var opened []*dataKey
	for _, dk := range keys {
		if dk.seed == nil {
			rep.NotOpened = append(rep.NotOpened, dk.id)
			continue
		}
		name, payload, err := wrapSeed(dk, dk.seed, rc)
		if err != nil {
			return rep, err
		}
		if err := r.putFreshObject(ctx, name, payload); err != nil {
			return rep, err
		}
		rep.Wrapped = append(rep.Wrapped, dk.id)
		opened = append(opened, dk)
	}
	if !removeOthers {
		return rep, nil
	}
	names, err := r.listNames(ctx, "recipients/")
	if err != nil {
		return rep, err
	}
	for _, dk := range opened {
		for _, n := range names {
			dkID, rcID, _ := strings.Cut(strings.TrimPrefix(n, "recipients/"), "-")
			if dkID != dk.id || rcID == rc.ID() {
				continue
			}
			if err := r.be.Delete(ctx, n); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return rep, fmt.Errorf("delete %s: %w", n, err)
			}
			rep.Removed = append(rep.Removed, n)
		}
	}
	return rep, nil
}

// repackSealedFrame moves a frame sealed to a data key into the writer's
// current pack byte for byte, with the blobs its header lists.
func (r *Repository) repackSealedFrame(ctx context.Context, w *Writer, fl FrameLoc, f frameHeader) error {
	sealed := make([]byte, fl.Sealed)
	if err := r.readRange(ctx, fl.Pack, fl.Offset, sealed); err != nil {
		return err
	}
	for _, b := range f.Blobs {
		w.seen.add(b.ID)
	}
	return w.addFrame(ctx, sealed, frameHeader{SealedLen: f.SealedLen, RawLen: f.RawLen, Flags: f.Flags, Blobs: f.Blobs})
}
