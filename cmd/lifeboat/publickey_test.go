package main

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

const testIdentityPassphrase = "restore host passphrase"

// pkEnv is a cluster backed up into a public-key repository: e is the
// backup host (key file and recipient only), restore the restore host
// (the same policy plus the identity).
type pkEnv struct {
	*env
	restore   *env
	identity  string
	recipient string
	// keyFile, when set, seals the identity instead of a passphrase.
	keyFile string
}

// startPKEnv is startEnv for a repository made with `repo init
// --recipient`; the identity is made by `repo keygen` apart from the
// backup host's files, sealed by a passphrase, or by a key file when
// keyFile is true.
func startPKEnv(t *testing.T, assetExtra string, keyFile bool) *pkEnv {
	t.Helper()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: t.TempDir(), assetExtra: assetExtra}
	e.repo = filepath.Join(e.dir, "repo")
	e.repoURL = "file://" + e.repo
	e.policy = filepath.Join(e.dir, "lifeboat.yaml")
	p := &pkEnv{env: e, identity: filepath.Join(t.TempDir(), "restore-host", "identity"), recipient: filepath.Join(e.dir, "recipient.txt")}
	args := []string{"repo", "keygen", "--identity", p.identity, "--recipient", p.recipient}
	if keyFile {
		p.keyFile = filepath.Join(filepath.Dir(p.identity), "identity.key")
		args = append(args, "--key-file", p.keyFile)
	}
	kg := exec.Command(e.bin, args...)
	kg.Env = append(os.Environ(), "LIFEBOAT_IDENTITY_PASSPHRASE="+testIdentityPassphrase)
	if out, err := kg.CombinedOutput(); err != nil {
		t.Fatalf("repo keygen: %v\n%s", err, out)
	}
	archive := fmt.Sprintf("%s -c %s wal-push db %%p", e.bin, e.policy)
	e.pg = pgtest.Start(t, pgtest.Options{Checksums: true, NoStart: true, Conf: map[string]string{
		"archive_mode": "on", "archive_command": archive, "wal_level": "replica", "archive_timeout": "0",
	}})
	e.writePolicy(filepath.Join(e.dir, "repo.key"))
	e.pg.Start(t)
	if out := e.mustRun("repo", "init", "--recipient", p.recipient); !strings.Contains(out, "seals backup contents to recipient") {
		t.Fatalf("repo init --recipient: %s", out)
	}
	r := *e
	r.policy = filepath.Join(t.TempDir(), "restore-host.yaml")
	p.restore = &r
	p.writeRestorePolicy()
	return p
}

// writeRestorePolicy writes the restore host's policy: the backup host's,
// with the identity for every repository.
func (p *pkEnv) writeRestorePolicy() {
	p.t.Helper()
	text, err := os.ReadFile(p.policy)
	if err != nil {
		p.t.Fatal(err)
	}
	unlock := fmt.Sprintf("identity_passphrase: %q", testIdentityPassphrase)
	if p.keyFile != "" {
		unlock = "identity_key_file: " + p.keyFile
	}
	out := regexp.MustCompile(`(?m)^(    key_file: .*)$`).ReplaceAllString(string(text),
		fmt.Sprintf("$1\n    identity_file: %s\n    %s", p.identity, unlock))
	if err := os.WriteFile(p.restore.policy, []byte(out), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// TestPublicKeyModePostgres: backup, incremental backup, wal-push and
// copy run with only the public key; restore, drill and verify --read-data
// refuse on the backup host with one line naming what is missing, and work
// on the restore host with the identity, from the primary and the copy.
func TestPublicKeyModePostgres(t *testing.T) {
	t.Parallel()
	p := startPKEnv(t, drillPolicy, true)
	e := p.env
	e.addFileCopy(filepath.Join(e.dir, "dr-copy"))
	p.writeRestorePolicy()
	e.sql("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1000) g")
	e.mustRun("backup", "db")
	e.sql("insert into t select g, 'after' from generate_series(1001, 1500) g")
	e.mustRun("backup", "db")
	snaps := e.snapshots()
	if len(snaps) != 2 || snaps[1].Type != "incr" || snaps[1].Parent == "" {
		t.Fatalf("the second backup on the host is not incremental: %+v", snaps)
	}
	e.sql("insert into t select g, 'later' from generate_series(1501, 1600) g")
	e.switchAndWait()
	e.sql("insert into t select g, 'last' from generate_series(1601, 1700) g")
	e.switchAndWait()
	e.mustRun("copy", "db")

	// The backup host: plain verify works, and doctor's WAL round trip
	// checks that the segment arrived without reading it.
	e.mustRun("verify")
	_, ps := e.doctor()
	wantProbe(t, ps, "wal_round_trip@primary", asset.ProbeOK, "sealed to the repository's public key")
	// Reading contents is refused.
	target := filepath.Join(t.TempDir(), "restored")
	for _, args := range [][]string{
		{"restore", "db", "--to", target, "--archive-off"},
		{"drill", "db", "--work-dir", t.TempDir()},
		{"verify", "--read-data"},
	} {
		res := e.run(args...)
		if res.code == 0 || !strings.Contains(res.stderr, "identity_file") || !strings.Contains(res.stderr, "public key") ||
			strings.Contains(strings.TrimSpace(res.stderr), "\n") {
			t.Fatalf("%v on the backup host: exit %d, want one line naming identity_file\nstdout: %s\nstderr: %s", args, res.code, res.stdout, res.stderr)
		}
		t.Logf("%v on the backup host: exit %d: %s", args, res.code, strings.TrimSpace(res.stderr))
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("a refused restore made its target: %v", err)
	}
	// A wal-fetch (restore_command) on the host is refused too.
	seg := walFiles(t, e.repo)[0]
	if res := e.run("wal-fetch", "db", filepath.Base(seg), filepath.Join(t.TempDir(), "seg")); res.code == 0 || !strings.Contains(res.stderr, "identity") {
		t.Fatalf("wal-fetch on the backup host: exit %d: %s", res.code, res.stderr)
	}

	// The restore host restores to the last archived row and drills.
	r := p.restore
	c := r.restoreAndStart()
	if got := c.Psql(t, "postgres", "select count(*) from t"); got != "1700" {
		t.Fatalf("restored %s rows, want 1700", got)
	}
	if rep := r.mustDrill("db"); rep.WALFiles < 2 {
		t.Fatalf("drill replayed %d WAL files", rep.WALFiles)
	}
	r.mustRun("verify", "--read-data")
	// The copy, filled by the backup host, restores with the same identity.
	c2 := r.restoreAndStart("--repository", "dr-copy")
	if got := c2.Psql(t, "postgres", "select count(*) from t"); got != "1700" {
		t.Fatalf("restored %s rows from the copy, want 1700", got)
	}
}

// pkWALObjects lists the archived WAL objects, histories included.
func pkWALObjects(t *testing.T, repoDir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(filepath.Join(repoDir, "wal"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// TestPublicKeyHostKeysReadNothing collects every key material the backup
// host holds (key file, policy, recipient, state directory, and the master
// key its key file opens) and tries each against every data frame and WAL
// file the host wrote: none opens any. The same attempts with the data key
// the identity unwraps open every one. The test reads the repository the
// way docs/FORMAT.md describes it, with no code of lifeboat's.
func TestPublicKeyHostKeysReadNothing(t *testing.T) {
	t.Parallel()
	p := startPKEnv(t, "", false)
	e := p.env
	e.sql("create table secret (id int, card text); insert into secret select g, 'card-' || g from generate_series(1, 5000) g")
	e.mustRun("backup", "db")
	e.switchAndWait()

	// What the host holds.
	keyText, err := os.ReadFile(filepath.Join(e.dir, "repo.key"))
	if err != nil {
		t.Fatal(err)
	}
	hostFiles := []string{filepath.Join(e.dir, "repo.key"), e.policy, p.recipient}
	filepath.WalkDir(filepath.Join(e.dir, "state"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			hostFiles = append(hostFiles, path)
		}
		return nil
	})
	var material [][]byte
	add := func(b []byte) {
		if len(b) >= 32 {
			material = append(material, b[:32], b[len(b)-32:])
		}
	}
	hexRun := regexp.MustCompile(`[0-9a-fA-F]{64}`)
	b64Run := regexp.MustCompile(`[A-Za-z0-9+/_-]{43}[A-Za-z0-9+/_=-]?`)
	for _, f := range hostFiles {
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
				if b, err := enc.DecodeString(strings.TrimRight(string(m), "=")); err == nil {
					add(b)
				} else if b, err := enc.DecodeString(string(m)); err == nil {
					add(b)
				}
			}
		}
	}
	// The master key the key file opens (§2), and the key-encryption key.
	mkEncrypt, mkID, kek := openMasterKey(t, e.repo, bytes.TrimSpace(keyText))
	material = append(material, mkEncrypt, mkID, kek)
	var cfg struct {
		Version int `json:"version"`
		DataKey struct {
			ID     string `json:"id"`
			Public []byte `json:"public"`
			Verify []byte `json:"verify"`
		} `json:"data_key"`
	}
	if err := json.Unmarshal(openObject(t, mkEncrypt, e.repo, "config"), &cfg); err != nil || cfg.Version != 4 {
		t.Fatalf("config: version %d, %v", cfg.Version, err)
	}
	material = append(material, cfg.DataKey.Public, cfg.DataKey.Verify)

	// What the host wrote: the sealed data frames of every pack (§4, §12)
	// and the inner part of every WAL object.
	type sealedObject struct{ b, ad []byte }
	var sealed []sealedObject
	frameAD := []byte("lifeboat data frame")
	filepath.WalkDir(filepath.Join(e.repo, "data"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			for _, f := range sealedFrames(t, mkEncrypt, path) {
				sealed = append(sealed, sealedObject{f, frameAD})
			}
		}
		return nil
	})
	frames := len(sealed)
	for _, w := range pkWALObjects(t, e.repo) {
		name := strings.TrimPrefix(w, e.repo+"/")
		inner := openObject(t, mkEncrypt, e.repo, name)
		if !bytes.HasPrefix(inner, []byte("LBD1")) {
			t.Fatalf("%s is not sealed to the data key", name)
		}
		sealed = append(sealed, sealedObject{inner[44:], []byte(name)})
	}
	if frames == 0 || len(sealed) == frames {
		t.Fatalf("%d sealed frames, %d WAL objects: the host wrote nothing sealed", frames, len(sealed)-frames)
	}
	for i, key := range material {
		for j, s := range sealed {
			if keyOpens(key, s.b, [][]byte{nil, s.ad}) {
				t.Fatalf("key material %d of the backup host opens sealed object %d", i, j)
			}
		}
	}
	if len(material) < 12 {
		t.Fatalf("only %d key materials collected", len(material))
	}
	// Control: the data key, unwrapped with the identity, opens them all.
	dataKey := unwrapDataKey(t, p.identity, mkEncrypt, e.repo, cfg.DataKey.ID)
	for j, s := range sealed {
		if !keyOpens(dataKey, s.b, [][]byte{nil, s.ad}) {
			t.Fatalf("the data key does not open sealed object %d: the attempts are broken", j)
		}
	}
}

func gcm(t *testing.T, key []byte) cipher.AEAD {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// openMasterKey opens the repository's key object with the key file (§2).
func openMasterKey(t *testing.T, repoDir string, keyText []byte) (encrypt, id, kek []byte) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(repoDir, "keys"))
	if err != nil || len(ents) != 1 {
		t.Fatalf("keys: %v %d", err, len(ents))
	}
	data, _ := os.ReadFile(filepath.Join(repoDir, "keys", ents[0].Name()))
	var kf struct {
		Salt []byte `json:"salt"`
		Data []byte `json:"data"`
	}
	if err := json.Unmarshal(data, &kf); err != nil {
		t.Fatal(err)
	}
	kek, err = hkdf.Key(sha256.New, keyText, kf.Salt, "lifeboat key-encryption key v1", 32)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := gcm(t, kek).Open(nil, kf.Data[:12], kf.Data[12:], []byte("lifeboat master key"))
	if err != nil {
		t.Fatalf("open the master key with the key file: %v", err)
	}
	var mk struct{ Encrypt, ID []byte }
	if err := json.Unmarshal(plain, &mk); err != nil {
		t.Fatal(err)
	}
	return mk.Encrypt, mk.ID, kek
}

// openObject opens a sealed object (§3) that is not compressed.
func openObject(t *testing.T, encrypt []byte, repoDir, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("LBO1")) {
		t.Fatalf("%s: bad magic", name)
	}
	plain, err := gcm(t, encrypt).Open(nil, data[4:16], data[16:], []byte(name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if plain[0] != 0 {
		t.Fatalf("%s: codec %d, want none", name, plain[0])
	}
	return plain[1:]
}

// sealedFrames returns the frames of a pack whose flags say sealed to a
// data key (§4.3, §4.4, §12).
func sealedFrames(t *testing.T, encrypt []byte, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hl := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
	sh := data[len(data)-4-hl : len(data)-4]
	hdr, err := gcm(t, encrypt).Open(nil, sh[:12], sh[12:], []byte("pack header"))
	if err != nil || !bytes.HasPrefix(hdr, []byte("LBPH\x01")) {
		t.Fatalf("%s: pack header: %v", path, err)
	}
	b := hdr[5:]
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		b = b[n:]
		return v
	}
	var out [][]byte
	off := 0
	for range uv() {
		sealedLen := int(uv())
		uv() // raw length
		flags := b[0]
		b = b[1:]
		for range uv() {
			b = b[1+16:] // type and a 16-byte blob ID (config version 4)
			uv()
		}
		if flags&2 != 0 {
			out = append(out, data[off+8:off+sealedLen]) // after the data key ID
		}
		off += sealedLen
	}
	return out
}

// keyOpens tries key as an AES-256-GCM key (nonce in front, or zero after
// an ephemeral key) and as an X25519 private key against the ephemeral key
// through HKDF with every info the format uses.
func keyOpens(key, sealed []byte, ads [][]byte) bool {
	if b, err := aes.NewCipher(key); err == nil {
		a, _ := cipher.NewGCM(b)
		for _, ad := range ads {
			if _, err := a.Open(nil, sealed[:12], sealed[12:], ad); err == nil {
				return true
			}
			if _, err := a.Open(nil, make([]byte, 12), sealed[32:], ad); err == nil {
				return true
			}
		}
	}
	priv, err := ecdh.X25519().NewPrivateKey(key)
	if err != nil {
		return false
	}
	eph, err := ecdh.X25519().NewPublicKey(sealed[:32])
	if err != nil {
		return false
	}
	shared, err := priv.ECDH(eph)
	if err != nil {
		return false
	}
	salt := append(append([]byte(nil), sealed[:32]...), priv.PublicKey().Bytes()...)
	for _, info := range []string{"lifeboat data frame v1", "lifeboat named object v1", "lifeboat data key wrap v1"} {
		k, _ := hkdf.Key(sha256.New, shared, salt, info, 32)
		b, _ := aes.NewCipher(k)
		a, _ := cipher.NewGCM(b)
		for _, ad := range ads {
			if _, err := a.Open(nil, make([]byte, 12), sealed[32:], ad); err == nil {
				return true
			}
		}
	}
	return false
}

// unwrapDataKey opens the identity file with its passphrase and the data
// key's wrap with the identity (§12), and derives the data key's X25519
// private key.
func unwrapDataKey(t *testing.T, identityPath string, encrypt []byte, repoDir, dataKeyID string) []byte {
	t.Helper()
	data, err := os.ReadFile(identityPath)
	if err != nil {
		t.Fatal(err)
	}
	var idf struct {
		Salt   []byte `json:"salt"`
		Argon2 struct {
			Time    uint32 `json:"time"`
			Memory  uint32 `json:"memory_kib"`
			Threads uint8  `json:"threads"`
		} `json:"argon2"`
		Data []byte `json:"data"`
	}
	if err := json.Unmarshal(data, &idf); err != nil {
		t.Fatal(err)
	}
	kek := argon2.IDKey([]byte(testIdentityPassphrase), idf.Salt, idf.Argon2.Time, idf.Argon2.Memory, idf.Argon2.Threads, 32)
	raw, err := gcm(t, kek).Open(nil, idf.Data[:12], idf.Data[12:], []byte("lifeboat identity"))
	if err != nil {
		t.Fatalf("identity: %v", err)
	}
	id, err := ecdh.X25519().NewPrivateKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	rcID := sha256.Sum256(id.PublicKey().Bytes())
	name := "recipients/" + dataKeyID + "-" + hex.EncodeToString(rcID[:8])
	var w struct {
		Wrapped []byte `json:"wrapped"`
	}
	if err := json.Unmarshal(openObject(t, encrypt, repoDir, name), &w); err != nil {
		t.Fatal(err)
	}
	eph, err := ecdh.X25519().NewPublicKey(w.Wrapped[:32])
	if err != nil {
		t.Fatal(err)
	}
	shared, err := id.ECDH(eph)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := hkdf.Key(sha256.New, shared, append(append([]byte(nil), w.Wrapped[:32]...), id.PublicKey().Bytes()...), "lifeboat data key wrap v1", 32)
	seed, err := gcm(t, k).Open(nil, make([]byte, 12), w.Wrapped[32:], []byte("lifeboat data key wrap\x00"+dataKeyID+"\x00"+hex.EncodeToString(rcID[:8])))
	if err != nil {
		t.Fatalf("unwrap the data key: %v", err)
	}
	x, _ := hkdf.Key(sha256.New, seed, nil, "lifeboat data key x25519 v1", 32)
	return x
}
