package repo

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// pkRepo is a public-key repository as a backup host sees it: opened with
// its key file, holding the recipient but no identity.
type pkRepo struct {
	r       *Repository
	dir     string
	keyPath string
	sec     Secret
	id      *Identity // the identity, kept apart from the host
}

func newIdentity(t testing.TB) *Identity {
	t.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Identity{priv: priv, source: "test identity"}
}

func newPKRepo(t testing.TB) *pkRepo {
	t.Helper()
	ctx := context.Background()
	p := &pkRepo{dir: t.TempDir(), keyPath: filepath.Join(t.TempDir(), "repo.key"), id: newIdentity(t)}
	if err := GenerateKeyFile(p.keyPath); err != nil {
		t.Fatal(err)
	}
	var err error
	if p.sec, err = KeyFile(p.keyPath); err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	rc := p.id.Recipient()
	cfg, err := Init(ctx, be, p.sec, InitOptions{Recipient: &rc})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != compactPublicKeyFormatVersion || cfg.DataKey == nil {
		t.Fatalf("config of a public-key repository: version %d, data key %v", cfg.Version, cfg.DataKey)
	}
	p.r = p.open(t)
	return p
}

// open opens the repository again with the key file and the identities
// given (none: a backup host).
func (p *pkRepo) open(t testing.TB, ids ...*Identity) *Repository {
	t.Helper()
	be, err := fs.New(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(context.Background(), be, p.sec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > 0 {
		r.SetIdentities(func() ([]*Identity, error) { return ids, nil })
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func checkRestored(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, "dir", p))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs after restore", p)
		}
	}
}

func TestPublicKeyBackupAndRestore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	random := make([]byte, 2<<20+7)
	rand.Read(random)
	files := map[string][]byte{"random": random, "text": compressible(3<<20, 1), "small": []byte("hello")}
	s1 := backupFiles(t, p.r, "a", files)
	// Deduplication works on the host: the same content stores nothing.
	s2 := backupFiles(t, p.r, "a", files)
	if s2.Stats.BlobsNew != 0 {
		t.Fatalf("second backup of identical data stored %d blobs", s2.Stats.BlobsNew)
	}
	// An incremental backup reads its parent's tree: trees stay readable
	// to the host.
	idx, err := p.r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	if err := p.r.WalkTree(ctx, idx, s1.Tree, func(n *Node) error { paths = append(paths, n.Path); return nil }); err != nil {
		t.Fatalf("the host reads its trees: %v", err)
	}
	if len(paths) != len(files)+1 {
		t.Fatalf("tree of %d nodes, want %d", len(paths), len(files)+1)
	}
	// Compression still works: text compresses inside the sealed frames.
	if st, _ := os.ReadDir(filepath.Join(p.dir, "data")); len(st) == 0 {
		t.Fatal("no packs")
	}
	// Plain verify needs no identity; reading data does.
	if rep, err := p.r.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK() {
		t.Fatalf("verify without data: %v %v", err, rep)
	}
	if _, err := p.r.Verify(ctx, VerifyOptions{ReadData: true}); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("verify --read-data without the identity: %v, want ErrNoIdentity", err)
	}
	// The host cannot restore, and touches nothing trying.
	target := filepath.Join(t.TempDir(), "target")
	if _, err := restoreTo(t, p.r, s2, false, target); !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "identity_file") {
		t.Fatalf("restore on the host: %v, want a refusal naming identity_file", err)
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore made its target: %v", err)
	}
	// A frame read directly fails too.
	if _, err := p.r.LoadBlob(ctx, idx, s1.Tree[0]); err != nil {
		t.Fatalf("tree blob: %v", err)
	}
	// The restore host, with the identity, reads everything.
	rr := p.open(t, p.id)
	dir := t.TempDir()
	if _, err := restoreTo(t, rr, s2, false, dir); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dir, files)
	mustVerify(t, rr)
	// The wrong identity is refused with the data key named.
	other := p.open(t, newIdentity(t))
	if err := other.CanReadContents(ctx); !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), "opens none") {
		t.Fatalf("a foreign identity: %v", err)
	}
}

func TestPublicKeyWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	seg := compressible(1<<20+5, 3)
	if existed, err := p.r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", seg, CodecS2); err != nil || existed {
		t.Fatalf("push: %v %v", existed, err)
	}
	// A retried push of the same file succeeds; other content conflicts.
	if existed, err := p.r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", seg, CodecS2); err != nil || !existed {
		t.Fatalf("retried push: %v %v", existed, err)
	}
	other := append([]byte(nil), seg...)
	other[100] ^= 1
	if _, err := p.r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", other, CodecS2); !errors.Is(err, ErrConflict) {
		t.Fatalf("push of other content: %v, want ErrConflict", err)
	}
	// Metadata named objects stay readable to the host.
	if _, err := p.r.PutNamed(ctx, "meta", "db", "identity", []byte(`{"system_id":"1"}`), CodecZstd); err != nil {
		t.Fatal(err)
	}
	if got, err := p.r.GetNamed(ctx, "meta", "db", "identity"); err != nil || string(got) != `{"system_id":"1"}` {
		t.Fatalf("meta on the host: %q %v", got, err)
	}
	if _, err := p.r.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000001"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("wal-fetch on the host: %v, want ErrNoIdentity", err)
	}
	rr := p.open(t, p.id)
	got, err := rr.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000001")
	if err != nil || !bytes.Equal(got, seg) {
		t.Fatalf("wal-fetch with the identity: %v", err)
	}
	// The stored object is bound to its name: moved, it does not open.
	stored, _ := os.ReadFile(filepath.Join(p.dir, "wal/db/00000001/000000010000000000000001"))
	inner, err := rr.crypt.openObject("wal/db/00000001/000000010000000000000001", stored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rr.openNamed(ctx, "wal/db/00000001/000000010000000000000002", inner); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("sealed WAL under another name: %v", err)
	}
}

// hostMaterial is every key material a backup host holds, or can derive
// from what it holds: its files (key file, recipient file, the policy, the
// state directory: every 32-byte value they hold, in hex, base64 or raw),
// the master key the key file opens, the key-encryption key, and the
// public keys of the repository.
func hostMaterial(t *testing.T, p *pkRepo, files []string) [][]byte {
	t.Helper()
	var out [][]byte
	add := func(b []byte) {
		if len(b) >= 32 {
			out = append(out, append([]byte(nil), b[:32]...))
			if len(b) > 32 {
				out = append(out, append([]byte(nil), b[len(b)-32:]...))
			}
		}
	}
	hexRun := regexp.MustCompile(`[0-9a-fA-F]{64}`)
	b64Run := regexp.MustCompile(`[A-Za-z0-9+/_-]{43,44}={0,1}`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		add(data)
		add(bytes.TrimSpace(data))
		for _, h := range hexRun.FindAll(data, -1) {
			b, _ := hex.DecodeString(string(h))
			add(b)
		}
		for _, m := range b64Run.FindAll(data, -1) {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
				if b, err := enc.DecodeString(string(m)); err == nil {
					add(b)
				}
			}
		}
	}
	mk := p.r.mk
	add(mk.Encrypt)
	add(mk.ID)
	add(p.r.crypt.chunkerSeed())
	add(p.r.cfg.DataKey.Public)
	add(p.r.cfg.DataKey.Verify)
	// The key-encryption key of the host's key object.
	kd, err := os.ReadFile(filepath.Join(p.dir, p.r.keyObj))
	if err != nil {
		t.Fatal(err)
	}
	var kf keyFileFormat
	if err := json.Unmarshal(kd, &kf); err != nil {
		t.Fatal(err)
	}
	kek, err := deriveKEK(p.sec, &kf)
	if err != nil {
		t.Fatal(err)
	}
	add(kek)
	add(p.sec.material)
	return out
}

// tryOpen attempts every way a 32-byte key could open sealed bytes (a
// data frame or the inner part of a WAL object): as an AES-256-GCM key with
// a nonce at any of the offsets the formats use, and as an X25519 private
// key against the ephemeral key, through HKDF with every info.
func tryOpen(key, sealed []byte, ads [][]byte) bool {
	if aead, err := newGCM(key); err == nil {
		for _, off := range []int{0, 8, 40, 44, 76} {
			if len(sealed) < off+28 {
				continue
			}
			for _, ad := range ads {
				if _, err := aead.Open(nil, sealed[off:off+12], sealed[off+12:], ad); err == nil {
					return true
				}
				if _, err := aead.Open(nil, zeroNonce[:], sealed[off:], ad); err == nil {
					return true
				}
			}
		}
	}
	priv, err := ecdh.X25519().NewPrivateKey(key)
	if err != nil {
		return false
	}
	for _, off := range []int{0, 8, 44} {
		if len(sealed) < off+48 {
			continue
		}
		for _, info := range []string{infoFrame, infoNamed, infoWrap} {
			for _, ad := range ads {
				if _, err := openFrom(nil, priv, info, sealed[off:], ad); err == nil {
					return true
				}
			}
		}
		// And the bare shared secret as the key.
		eph, err := ecdh.X25519().NewPublicKey(sealed[off : off+32])
		if err != nil {
			continue
		}
		shared, err := priv.ECDH(eph)
		if err != nil {
			continue
		}
		k2, _ := hkdf.Key(sha256.New, shared, nil, "", 32)
		for _, k := range [][]byte{shared, k2} {
			aead, _ := newGCM(k)
			for _, ad := range ads {
				if _, err := aead.Open(nil, zeroNonce[:], sealed[off+32:], ad); err == nil {
					return true
				}
			}
		}
	}
	return false
}

// TestPublicKeyHostKeysOpenNothing collects every key material the backup
// host holds and tries each against every sealed data frame and WAL file
// the host wrote: none opens. The identity opens them all by the same
// attempts, so the attempts are able to succeed.
func TestPublicKeyHostKeysOpenNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	files := map[string][]byte{"random": bytes.Repeat([]byte("secret payroll row;"), 50000), "b": compressible(200<<10, 4)}
	backupFiles(t, p.r, "a", files)
	walName := "wal/db/00000001/000000010000000000000001"
	if _, err := p.r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", compressible(1<<20, 5), CodecS2); err != nil {
		t.Fatal(err)
	}
	// The host's files: key file, recipient file, a policy naming them, a
	// state directory.
	hostDir := t.TempDir()
	recipientFile := filepath.Join(hostDir, "recipient.txt")
	os.WriteFile(recipientFile, []byte(p.id.Recipient().String()+"\n"), 0o644)
	policyFile := filepath.Join(hostDir, "lifeboat.yaml")
	os.WriteFile(policyFile, []byte("repositories:\n  - name: main\n    url: file://"+p.dir+"\n    key_file: "+p.keyPath+"\n"), 0o600)
	stateFile := filepath.Join(hostDir, "state", "catalog.db")
	os.MkdirAll(filepath.Dir(stateFile), 0o700)
	os.WriteFile(stateFile, []byte("state of the host"), 0o600)
	material := hostMaterial(t, p, []string{p.keyPath, recipientFile, policyFile, stateFile, filepath.Join(p.dir, "config")})
	if len(material) < 10 {
		t.Fatalf("collected %d keys only", len(material))
	}

	// What the host wrote: every sealed data frame, and the WAL file's
	// inner part (its outer sealing is the writers' own, by design).
	idx, err := p.r.LoadIndex(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sealed [][]byte
	for _, fl := range idx.frames {
		if fl.Flags&frameFlagSealed == 0 {
			continue
		}
		b := make([]byte, fl.Sealed)
		if err := p.r.readRange(ctx, fl.Pack, fl.Offset, b); err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, b)
	}
	if len(sealed) == 0 {
		t.Fatal("no sealed data frame")
	}
	stored, err := os.ReadFile(filepath.Join(p.dir, walName))
	if err != nil {
		t.Fatal(err)
	}
	walInner, err := p.r.crypt.openObject(walName, stored)
	if err != nil {
		t.Fatal(err)
	}
	ads := [][]byte{nil, frameAD, []byte(walName), []byte("pack header")}
	for i, key := range material {
		for j, s := range append(sealed, walInner) {
			if tryOpen(key, s, ads) {
				t.Fatalf("host key material %d opened sealed object %d", i, j)
			}
		}
	}
	// The data key itself, which only the identity unwraps, opens them
	// by the same attempts.
	rr := p.open(t, p.id)
	if err := rr.CanReadContents(ctx); err != nil {
		t.Fatal(err)
	}
	dk := rr.rcp.current
	for j, s := range append(sealed, walInner) {
		if !tryOpen(dk.priv.Bytes(), s, ads) {
			t.Fatalf("the data key does not open sealed object %d: the attempts are broken", j)
		}
	}
}

func TestPublicKeyRotationAndRewrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	randomData := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	oldFiles := map[string][]byte{"old": randomData(100 << 10)}
	s1 := backupFiles(t, p.r, "a", oldFiles)
	id2 := newIdentity(t)
	// Adding a recipient needs the current identity: the host cannot.
	if _, err := p.r.AddRecipient(ctx, id2.Recipient()); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("add-recipient without the identity: %v", err)
	}
	admin := p.open(t, p.id)
	newKey, err := admin.AddRecipient(ctx, id2.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	// A host opened afterwards seals to the new key.
	host := p.open(t)
	if host.DataKeyID() != newKey {
		t.Fatalf("host seals to %s, want the new key %s", host.DataKeyID(), newKey)
	}
	newFiles := map[string][]byte{"new": randomData(100 << 10)}
	s2 := backupFiles(t, host, "a", newFiles)
	// Deduplication spans the rotation: unchanged blocks are not stored
	// again, so a new backup of old content uses blocks of the old key.
	s3 := backupFiles(t, host, "a", oldFiles)
	if s3.Stats.BlobsNew != 0 {
		t.Fatalf("old content after the rotation stored %d blobs again", s3.Stats.BlobsNew)
	}

	r1, r2 := p.open(t, p.id), p.open(t, id2)
	if _, err := restoreTo(t, r1, s1, false, t.TempDir()); err != nil {
		t.Fatalf("old identity, old backup: %v", err)
	}
	if _, err := restoreTo(t, r1, s2, false, t.TempDir()); !errors.Is(err, ErrNoIdentity) || !strings.Contains(err.Error(), newKey) {
		t.Fatalf("old identity, new backup: %v, want a refusal naming data key %s", err, newKey)
	}
	if _, err := restoreTo(t, r2, s1, false, t.TempDir()); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("new identity, old backup: %v", err)
	}
	dir := t.TempDir()
	if _, err := restoreTo(t, r2, s2, false, dir); err != nil {
		t.Fatalf("new identity, new backup: %v", err)
	}
	checkRestored(t, dir, newFiles)
	if _, err := restoreTo(t, r2, s3, false, t.TempDir()); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("new identity, new backup of old blocks, before rewrap: %v", err)
	}

	// Rewrap the old key to the new identity, and drop the old wraps: the
	// new identity reads everything, the old one nothing, and no pack was
	// rewritten.
	packsBefore := listAll(t, p.r, "data/")
	rep, err := r1.Rewrap(ctx, id2.Recipient(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Wrapped) != 1 || len(rep.NotOpened) != 1 || len(rep.Removed) != 1 {
		t.Fatalf("rewrap: %+v, want the old key wrapped, its old wrap removed, the new key not opened", rep)
	}
	if after := listAll(t, p.r, "data/"); strings.Join(after, ",") != strings.Join(packsBefore, ",") {
		t.Fatal("rewrap changed packs")
	}
	r2 = p.open(t, id2)
	for _, s := range []*Snapshot{s1, s2, s3} {
		if _, err := restoreTo(t, r2, s, false, t.TempDir()); err != nil {
			t.Fatalf("new identity after rewrap: %v", err)
		}
	}
	if err := p.open(t, p.id).CanReadContents(ctx); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("old identity after rewrap --remove-old: %v", err)
	}
}

func listAll(t *testing.T, r *Repository, prefix string) []string {
	t.Helper()
	names, err := r.listNames(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A writer's key seals objects but signs nothing: a data key it plants
// is not trusted, and writers go on sealing to the genuine one.
func TestPublicKeyPlantedDataKeyIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	evil, _, err := newDataKey(2)
	if err != nil {
		t.Fatal(err)
	}
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	o := dataKeyObject{ID: evil.id, Seq: 2, Prev: p.r.cfg.DataKey.ID, Public: evil.pub.Bytes(), Verify: evil.verify, Created: time.Now()}
	o.Signature = ed25519.Sign(forger, o.signedBytes())
	payload, _ := json.Marshal(o)
	if err := p.r.putFreshObject(ctx, dataKeyName(evil.id), payload); err != nil {
		t.Fatal(err)
	}
	r := p.open(t)
	if r.DataKeyID() != p.r.cfg.DataKey.ID {
		t.Fatalf("writer seals to %s, a planted key", r.DataKeyID())
	}
	if u := r.UnauthenticSince(0); len(u) != 1 || u[0].Name != dataKeyName(evil.id) {
		t.Fatalf("planted data key not reported: %v", u)
	}
}

func TestPublicKeyCopyAndRepack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newPKRepo(t)
	var off time.Duration
	shiftClock(p.r, &off)
	keep := map[string][]byte{"keep": compressible(300<<10, 1)}
	s1 := backupFiles(t, p.r, "a", map[string][]byte{"keep": keep["keep"], "drop": compressible(900<<10, 2)})
	s2 := backupFiles(t, p.r, "a", keep)
	if _, err := p.r.PutNamed(ctx, "wal", "db", "00000001/000000010000000000000001", compressible(64<<10, 3), CodecS2); err != nil {
		t.Fatal(err)
	}
	// Copy, on the host: the copy is a public-key repository too.
	cdir := t.TempDir()
	cbe, _ := fs.New(cdir)
	if err := p.r.InitCopy(ctx, cbe, p.sec); err != nil {
		t.Fatal(err)
	}
	if _, err := p.r.Sync(ctx, cbe); err != nil {
		t.Fatal(err)
	}
	cp := &pkRepo{dir: cdir, sec: p.sec}
	cr := cp.open(t, p.id)
	if !cr.PublicKeyMode() {
		t.Fatal("the copy is not in the public-key mode")
	}
	dir := t.TempDir()
	if _, err := restoreTo(t, cr, s2, false, dir); err != nil {
		t.Fatalf("restore from the copy: %v", err)
	}
	checkRestored(t, dir, keep)
	if got, err := cr.GetNamed(ctx, "wal", "db", "00000001/000000010000000000000001"); err != nil || !bytes.Equal(got, compressible(64<<10, 3)) {
		t.Fatalf("WAL from the copy: %v", err)
	}
	// Repack on the host, without the identity: sealed frames move as
	// they are, and the identity still restores.
	if err := p.r.DeleteSnapshot(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	off = 2 * time.Hour
	rep, err := p.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2}, RepackUnused: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Repacked == 0 {
		t.Fatalf("nothing repacked: %+v", rep)
	}
	off = 4 * time.Hour
	if rep, err = p.r.Sweep(ctx, SweepOptions{Grace: time.Hour, Snapshots: []*Snapshot{s2}, RepackUnused: 0.3}); err != nil || len(rep.Deleted) == 0 {
		t.Fatalf("second sweep: %v %+v", err, rep)
	}
	rr := p.open(t, p.id)
	dir = t.TempDir()
	if _, err := restoreTo(t, rr, s2, false, dir); err != nil {
		t.Fatalf("restore after repack: %v", err)
	}
	checkRestored(t, dir, keep)
	mustVerify(t, rr)
}

func TestIdentityFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	idPath, rcPath := filepath.Join(dir, "id"), filepath.Join(dir, "id.pub")
	pass, _ := Passphrase("correct horse battery")
	rc, err := GenerateIdentity(idPath, rcPath, pass)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateIdentity(idPath, filepath.Join(dir, "other.pub"), pass); err == nil {
		t.Fatal("an existing identity file was overwritten")
	}
	got, err := ReadRecipientFile(rcPath)
	if err != nil || got.String() != rc.String() {
		t.Fatalf("recipient file: %v %v", got, err)
	}
	id, err := ReadIdentityFile(idPath, pass)
	if err != nil || id.Recipient().String() != rc.String() {
		t.Fatalf("identity file: %v", err)
	}
	wrong, _ := Passphrase("wrong horse battery")
	if _, err := ReadIdentityFile(idPath, wrong); err == nil || !strings.Contains(err.Error(), "does not open") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// An identity sealed by a key file, for a restore host: opened with
	// HKDF, not with a passphrase.
	kfPath := filepath.Join(dir, "identity.key")
	if err := GenerateKeyFile(kfPath); err != nil {
		t.Fatal(err)
	}
	kf, _ := KeyFile(kfPath)
	kid, krc := filepath.Join(dir, "kid"), filepath.Join(dir, "kid.pub")
	rc2, err := GenerateIdentity(kid, krc, kf)
	if err != nil {
		t.Fatal(err)
	}
	if id2, err := ReadIdentityFile(kid, kf); err != nil || id2.Recipient().String() != rc2.String() {
		t.Fatalf("key-file identity: %v", err)
	}
	if _, err := ReadIdentityFile(kid, pass); err == nil || !strings.Contains(err.Error(), "identity_key_file") {
		t.Fatalf("key-file identity opened with a passphrase: %v", err)
	}
	if _, err := ReadIdentityFile(idPath, kf); err == nil || !strings.Contains(err.Error(), "identity_passphrase") {
		t.Fatalf("passphrase identity opened with a key file: %v", err)
	}
	data, _ := os.ReadFile(idPath)
	if bytes.Contains(data, id.priv.Bytes()) || strings.Contains(string(data), base64.StdEncoding.EncodeToString(id.priv.Bytes())) {
		t.Fatal("the identity file holds its key in the clear")
	}
	if fi, _ := os.Stat(idPath); fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v", fi.Mode())
	}
	if _, err := ParseRecipient("age1qqqq"); err == nil {
		t.Fatal("a foreign recipient parsed")
	}
}

// A symmetric repository's config and frames are as before: version 3, no
// data key, no sealed frame.
func TestSymmetricModeUnchanged(t *testing.T) {
	t.Parallel()
	r, _, _ := newTestRepo(t)
	if r.PublicKeyMode() || r.cfg.Version != compactFormatVersion || r.cfg.DataKey != nil {
		t.Fatalf("symmetric config: %+v", r.cfg)
	}
	backupFiles(t, r, "a", map[string][]byte{"x": compressible(100<<10, 1)})
	idx, err := r.LoadIndex(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range idx.frames {
		if fl.Flags&frameFlagSealed != 0 {
			t.Fatal("a symmetric repository wrote a sealed frame")
		}
	}
	if err := r.CanReadContents(context.Background()); err != nil {
		t.Fatal(err)
	}
	if names := listAll(t, r, "recipients/"); len(names) != 0 {
		t.Fatalf("recipients in a symmetric repository: %v", names)
	}
}
