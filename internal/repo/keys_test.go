package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// plantKey stores a key object with the given fields under the SHA-256 of
// its bytes, chosen (by varying its host) to sort before every name in
// before, so that Open meets it before the genuine keys.
func plantKey(t *testing.T, be storage.Backend, kf keyFileFormat, before []string) string {
	t.Helper()
	for i := 0; ; i++ {
		kf.Host = "attacker-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i/26)
		data, err := json.Marshal(kf)
		if err != nil {
			t.Fatal(err)
		}
		name := "keys/" + hashObject(data).String()
		first := true
		for _, b := range before {
			first = first && name < b
		}
		if !first {
			continue
		}
		if err := be.Put(context.Background(), name, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		return name
	}
}

func keyNames(t *testing.T, be storage.Backend) []string {
	t.Helper()
	names, err := listNames(context.Background(), be, "keys/")
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestPlantedKeyObjectsAreSkipped plants key objects that would panic the
// Argon2 library, exhaust memory or hang, or whose name is not their hash;
// each sorts before the genuine keys. Opening skips each with a message
// naming it and opens with the genuine key; verify reports each.
func TestPlantedKeyObjectsAreSkipped(t *testing.T) {
	t.Parallel()
	r, dir, keySec := newTestRepo(t)
	ctx := context.Background()
	pp, err := Passphrase("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddKey(ctx, pp); err != nil {
		t.Fatal(err)
	}
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	genuine := keyNames(t, be)
	salt := bytes.Repeat([]byte{7}, keySaltSize)
	data := bytes.Repeat([]byte{1}, 60)
	argon := func(p argon2Params) keyFileFormat {
		return keyFileFormat{Version: 1, KDF: kdfArgon2, Salt: salt, Argon2: &p, Data: data}
	}
	planted := map[string]string{
		plantKey(t, be, argon(argon2Params{Time: 2, Memory: 64 << 10, Threads: 0}), genuine):          "threads 0",
		plantKey(t, be, argon(argon2Params{Time: 2, Memory: 1<<32 - 1, Threads: 2}), genuine):         "memory_kib 4294967295",
		plantKey(t, be, argon(argon2Params{Time: 1<<32 - 1, Memory: 64 << 10, Threads: 2}), genuine):  "time 4294967295",
		plantKey(t, be, keyFileFormat{Version: 1, KDF: kdfArgon2, Salt: salt, Data: data}, genuine):   "without parameters",
		plantKey(t, be, keyFileFormat{Version: 1, KDF: "scrypt", Salt: salt, Data: data}, genuine):    "unknown key derivation",
		plantKey(t, be, keyFileFormat{Version: 1, KDF: kdfHKDF, Salt: salt[:4], Data: data}, genuine): "salt of 4 bytes",
	}
	// A genuine key object copied to a name that is not its hash.
	copied, err := storage.ReadAll(ctx, be, genuine[0])
	if err != nil {
		t.Fatal(err)
	}
	misnamed := "keys/" + strings.Repeat("0", 64)
	if err := be.Put(ctx, misnamed, bytes.NewReader(copied), int64(len(copied))); err != nil {
		t.Fatal(err)
	}
	planted[misnamed] = "does not match its name"
	junk := []byte("not json at all")
	junkName := "keys/" + hashObject(junk).String()
	if err := be.Put(ctx, junkName, bytes.NewReader(junk), int64(len(junk))); err != nil {
		t.Fatal(err)
	}
	planted[junkName] = "parse"
	huge := bytes.Repeat([]byte(" "), maxKeyObjectSize+1)
	hugeName := "keys/" + hashObject(huge).String()
	if err := be.Put(ctx, hugeName, bytes.NewReader(huge), int64(len(huge))); err != nil {
		t.Fatal(err)
	}
	planted[hugeName] = "larger than"

	for _, sec := range []Secret{keySec, pp} {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		r2, err := Open(ctx, be, sec, log)
		if err != nil {
			t.Fatalf("open with the %s beside planted keys: %v", sec, err)
		}
		if !strings.HasPrefix(r2.KeyName(), "keys/") || planted[r2.KeyName()] != "" {
			t.Errorf("opened with %q, not a genuine key", r2.KeyName())
		}
		// Every planted object is checked before any key is tried, and
		// reported by name.
		for name, why := range planted {
			if !strings.Contains(logs.String(), "key object skipped") || !strings.Contains(logs.String(), name) {
				t.Errorf("open with the %s: planted key %s (%s) not reported:\n%s", sec, name, why, logs.String())
			}
		}
	}

	// A secret no key opens says which objects were skipped, on one line.
	other, err := Passphrase("another passphrase")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, be, other, nil)
	if !errors.Is(err, ErrWrongKey) || !strings.Contains(err.Error(), "key objects were skipped") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("open with a wrong passphrase: %v", err)
	}

	rep, err := r.Verify(ctx, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for name, why := range planted {
		found := false
		for _, p := range rep.Problems {
			found = found || (strings.HasPrefix(p, name+":") && strings.Contains(p, why))
		}
		if !found {
			t.Errorf("verify does not report planted key %s (%s): %q", name, why, rep.Problems)
		}
	}
	if len(rep.Problems) != len(planted) {
		t.Errorf("verify found %d problems, want the %d planted keys: %q", len(rep.Problems), len(planted), rep.Problems)
	}
}

func TestArgon2Bounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		p  argon2Params
		ok bool
	}{
		{defaultArgon2, true},
		{argon2Params{Time: argon2MinTime, Memory: argon2MinMemoryKiB, Threads: argon2MinThreads}, true},
		{argon2Params{Time: argon2MaxTime, Memory: argon2MaxMemoryKiB, Threads: argon2MaxThreads}, true},
		{argon2Params{Time: 0, Memory: 64 << 10, Threads: 2}, false},
		{argon2Params{Time: argon2MaxTime + 1, Memory: 64 << 10, Threads: 2}, false},
		{argon2Params{Time: 2, Memory: argon2MinMemoryKiB - 1, Threads: 2}, false},
		{argon2Params{Time: 2, Memory: argon2MaxMemoryKiB + 1, Threads: 2}, false},
		{argon2Params{Time: 2, Memory: 64 << 10, Threads: 0}, false},
		{argon2Params{Time: 2, Memory: 64 << 10, Threads: argon2MaxThreads + 1}, false},
	} {
		if err := tc.p.check(); (err == nil) != tc.ok {
			t.Errorf("%+v: check = %v, want ok %v", tc.p, err, tc.ok)
		}
	}
}

func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeyFileFormats(t *testing.T) {
	t.Parallel()
	hex64 := strings.Repeat("0123456789abcdef", 4)
	for _, tc := range []struct {
		name, content string
		legacy        bool
		err           string
	}{
		{"64 hex digits and a newline", hex64 + "\n", false, ""},
		{"64 upper-case hex digits", strings.ToUpper(hex64), false, ""},
		{"64 hex digits in white space", "  " + hex64 + "\r\n\n", false, ""},
		{"63 hex digits (old format)", hex64[:63], true, ""},
		{"65 hex digits (old format)", hex64 + "a", true, ""},
		{"a sentence (old format)", "this is the passphrase-like key file of 2019", true, ""},
		{"64 characters, not all hex (old format)", strings.Repeat("g", 64), true, ""},
		{"too short", "0123456789abcdef0123456789abcde", false, "want 64 hex digits"},
		{"empty", "\n", false, "holds 0 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := KeyFile(writeKeyFile(t, tc.content))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("KeyFile = %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil || s.Legacy() != tc.legacy {
				t.Fatalf("KeyFile: legacy %v, err %v; want legacy %v", s.Legacy(), err, tc.legacy)
			}
		})
	}
	t.Run("generated", func(t *testing.T) {
		t.Parallel()
		p := filepath.Join(t.TempDir(), "new.key")
		if err := GenerateKeyFile(p); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(p)
		fi, _ := os.Stat(p)
		s, err := KeyFile(p)
		if err != nil || s.Legacy() || !isKeyHex(bytes.TrimSpace(data)) || fi.Mode().Perm() != 0o600 {
			t.Fatalf("generated key file %q (mode %v): legacy %v, err %v", data, fi.Mode(), s.Legacy(), err)
		}
		if err := GenerateKeyFile(p); err == nil {
			t.Fatal("GenerateKeyFile overwrote an existing key file")
		}
	})
	t.Run("a device is not read to its end", func(t *testing.T) {
		t.Parallel()
		if _, err := KeyFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Fatalf("KeyFile(/dev/zero) = %v", err)
		}
	})
}

// TestLegacyKeyFileOpensButMakesNoKeys: a repository made with a key file
// in the old format (as Lifeboat made them before key files had to be 64
// hex digits) still opens with it, with a warning; no new repository or
// key is made with such a file; a new key file added to the repository
// opens it.
func TestLegacyKeyFileOpensButMakesNoKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := writeKeyFile(t, "an old key file with 40 characters inside\n")
	legacy, err := KeyFile(path)
	if err != nil || !legacy.Legacy() {
		t.Fatalf("KeyFile: legacy %v, err %v", legacy.Legacy(), err)
	}
	dir := t.TempDir()
	be, err := fs.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(ctx, be, legacy, InitOptions{}); err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Fatalf("Init with an old-format key file: %v", err)
	}
	if names := keyNames(t, be); len(names) != 0 {
		t.Fatalf("a refused Init stored %v", names)
	}
	// What an older Lifeboat wrote: the same secret, not yet marked.
	old := legacy
	old.legacy = false
	if _, err := Init(ctx, be, old, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	r, err := Open(ctx, be, legacy, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatalf("open with the old-format key file: %v", err)
	}
	if !strings.Contains(logs.String(), "old format") || !strings.Contains(logs.String(), path) {
		t.Errorf("opening with an old-format key file does not warn:\n%s", logs.String())
	}
	if _, err := r.AddKey(ctx, legacy); err == nil {
		t.Error("AddKey made a key object from an old-format key file")
	}
	copyBE, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.InitCopy(ctx, copyBE, legacy); err == nil {
		t.Error("InitCopy made a key object from an old-format key file")
	}
	newPath := filepath.Join(t.TempDir(), "new.key")
	if err := GenerateKeyFile(newPath); err != nil {
		t.Fatal(err)
	}
	fresh, err := KeyFile(newPath)
	if err != nil {
		t.Fatal(err)
	}
	added, err := r.AddKey(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, be, fresh, nil)
	if err != nil || r2.KeyName() != added {
		t.Fatalf("open with the added key file: %v (key %s, added %s)", err, r2.KeyName(), added)
	}
}

// FuzzParseKeyObject: whatever a key object holds, checking it never
// panics, and what passes has a name that is its hash and bounded costs,
// so that deriving from it cannot panic or run away either.
func FuzzParseKeyObject(f *testing.F) {
	pp, err := Passphrase("correct horse battery")
	if err != nil {
		f.Fatal(err)
	}
	mk, err := newMasterKey()
	if err != nil {
		f.Fatal(err)
	}
	_, genuine, err := wrapKey(pp, mk)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(genuine)
	f.Add([]byte(`{"version":1,"kdf":"argon2id","salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","argon2":{"time":2,"memory_kib":65536,"threads":0},"data":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := parseKeyObject("keys/"+hashObject(data).String(), data)
		if err != nil {
			if !errors.Is(err, errBadKeyObject) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not marked as a bad key object: %v", err)
			}
			return
		}
		if kf.KDF == kdfArgon2 && (kf.Argon2 == nil || kf.Argon2.check() != nil) {
			t.Fatalf("accepted unbounded costs: %+v", kf.Argon2)
		}
		if _, err := parseKeyObject("keys/"+strings.Repeat("0", 64), data); err == nil {
			t.Fatal("accepted a key object under a name that is not its hash")
		}
	})
}
