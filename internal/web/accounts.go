package web

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"golang.org/x/crypto/argon2"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
)

// Role is what an account or a token may do; each role may do what the
// ones before it may.
type Role string

const (
	Viewer   Role = "viewer"   // reads every page and the API
	Operator Role = "operator" // also starts backups
	Approver Role = "approver" // also approves protected actions
	Admin    Role = "admin"    // everything
)

// Roles lists the roles, least first.
var Roles = []Role{Viewer, Operator, Approver, Admin}

func (r Role) rank() int {
	for i, x := range Roles {
		if x == r {
			return i + 1
		}
	}
	return 0
}

// Allows reports whether r may do what need requires.
func (r Role) Allows(need Role) bool { return r.rank() > 0 && r.rank() >= need.rank() }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.rank() > 0 {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: use viewer, operator, approver or admin", s)
}

// User is a local account: a password (Argon2id) and a TOTP secret.
type User struct {
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Password string    `json:"password"` // $argon2id$v=19$m=…,t=…,p=…$salt$hash
	TOTP     string    `json:"totp"`     // base32 secret
	Created  time.Time `json:"created"`
	// WebAuthn are the security keys that may stand in for the TOTP code
	// at sign-in, registered on the account page.
	WebAuthn []webauthn.Credential `json:"webauthn,omitempty"`
}

// Token is an API token: only its SHA-256 is kept, the token itself is
// printed once.
type Token struct {
	ID      string    `json:"id"`
	Role    Role      `json:"role"`
	Hash    string    `json:"hash"`
	Created time.Time `json:"created"`
}

type accountsFile struct {
	Users  []User  `json:"users"`
	Tokens []Token `json:"tokens"`
}

// AccountsPath is where the accounts of the dashboard live: a file of
// state_dir readable by its owner only.
func AccountsPath(stateDir string) string { return filepath.Join(stateDir, "web", "accounts.json") }

// Accounts is the file of local accounts and API tokens. It is read
// anew on each sign-in, so that accounts added by `lifeboat web user add`
// work without a restart.
type Accounts struct {
	path string
	mu   sync.Mutex
}

// OpenAccounts is the accounts file at path (which may not exist yet).
func OpenAccounts(path string) *Accounts { return &Accounts{path: path} }

func (a *Accounts) load() (*accountsFile, error) {
	b, err := os.ReadFile(a.path)
	if errors.Is(err, fs.ErrNotExist) {
		return &accountsFile{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	var f accountsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("accounts %s: %w", a.path, err)
	}
	return &f, nil
}

func (a *Accounts) save(f *accountsFile) error {
	if err := os.MkdirAll(filepath.Dir(a.path), 0o700); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.Replace(a.path, b, 0o600); err != nil {
		return fmt.Errorf("accounts: %w", err)
	}
	return nil
}

var userName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,63}$`)

// AddUser creates a local account and returns its TOTP key (the secret
// and the otpauth:// URL an authenticator app reads).
func (a *Accounts) AddUser(name string, role Role, password string, now time.Time) (*otp.Key, error) {
	if !userName.MatchString(name) {
		return nil, fmt.Errorf("user name %q: use letters, digits, '.', '_', '@' and '-', at most 64", name)
	}
	if role.rank() == 0 {
		return nil, fmt.Errorf("unknown role %q", role)
	}
	if len(password) < 12 {
		return nil, errors.New("password: at least 12 characters")
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "Lifeboat", AccountName: name})
	if err != nil {
		return nil, fmt.Errorf("totp: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := a.load()
	if err != nil {
		return nil, err
	}
	for _, u := range f.Users {
		if u.Name == name {
			return nil, fmt.Errorf("user %s exists already", name)
		}
	}
	f.Users = append(f.Users, User{Name: name, Role: role, Password: hashPassword(password), TOTP: key.Secret(), Created: now.UTC()})
	return key, a.save(f)
}

// CreateToken makes an API token for role and returns it; only its hash
// is kept.
func (a *Accounts) CreateToken(role Role, now time.Time) (id, token string, err error) {
	if role.rank() == 0 {
		return "", "", fmt.Errorf("unknown role %q", role)
	}
	id = randomText(6)
	token = "lbt_" + id + "_" + randomText(32)
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := a.load()
	if err != nil {
		return "", "", err
	}
	f.Tokens = append(f.Tokens, Token{ID: id, Role: role, Hash: tokenHash(token), Created: now.UTC()})
	return id, token, a.save(f)
}

// TokenRole is the role of a bearer token, or an error when no token of
// the file matches.
func (a *Accounts) TokenRole(token string) (Role, string, error) {
	f, err := a.load()
	if err != nil {
		return "", "", err
	}
	h := tokenHash(token)
	for _, t := range f.Tokens {
		if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) == 1 {
			return t.Role, "token:" + t.ID, nil
		}
	}
	return "", "", errors.New("unknown token")
}

// errSignIn is the one answer to a wrong name, password or code, so that
// a refusal tells nothing of which was wrong.
var errSignIn = errors.New("wrong user name, password or code")

// check verifies a sign-in: the password, then the TOTP code at now.
func (a *Accounts) check(name, password, code string, now time.Time) (*User, error) {
	found, err := a.password(name, password)
	if err != nil {
		return nil, err
	}
	ok, err := totp.ValidateCustom(strings.TrimSpace(code), found.TOTP, now, totp.ValidateOpts{
		Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil || !ok {
		return nil, errSignIn
	}
	return found, nil
}

// password checks the first factor of a sign-in: the account's password.
func (a *Accounts) password(name, password string) (*User, error) {
	f, err := a.load()
	if err != nil {
		return nil, err
	}
	var found *User
	for i := range f.Users {
		if f.Users[i].Name == name {
			found = &f.Users[i]
		}
	}
	if found == nil {
		// The same work as for a real account, so that timing does not
		// tell which names exist.
		checkPassword(dummyHash(), password)
		return nil, errSignIn
	}
	if !checkPassword(found.Password, password) {
		return nil, errSignIn
	}
	return found, nil
}

// user is the local account name.
func (a *Accounts) user(name string) (*User, error) {
	f, err := a.load()
	if err != nil {
		return nil, err
	}
	for i := range f.Users {
		if f.Users[i].Name == name {
			return &f.Users[i], nil
		}
	}
	return nil, fmt.Errorf("no local account %s", name)
}

// Local reports whether name is a local account (not a person signed in
// through OpenID Connect).
func (a *Accounts) Local(name string) bool {
	f, err := a.load()
	if err != nil {
		return false
	}
	for _, u := range f.Users {
		if u.Name == name {
			return true
		}
	}
	return false
}

// SaveCredential keeps a security key of the local account name for
// sign-in, or updates the one of the same id (its signature counter).
func (a *Accounts) SaveCredential(name string, c webauthn.Credential) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, err := a.load()
	if err != nil {
		return err
	}
	for i := range f.Users {
		u := &f.Users[i]
		if u.Name != name {
			continue
		}
		for j := range u.WebAuthn {
			if bytes.Equal(u.WebAuthn[j].ID, c.ID) {
				u.WebAuthn[j] = c
				return a.save(f)
			}
		}
		u.WebAuthn = append(u.WebAuthn, c)
		return a.save(f)
	}
	return fmt.Errorf("no local account %s", name)
}

// Argon2id parameters: OWASP's recommended minimum (19 MiB, two passes),
// a few tens of milliseconds per sign-in.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// dummyHash is made on first use, not at package init: an Argon2id run
// at init cost every lifeboat process (wal-push included) most of a
// second of CPU on a loaded host.
var dummyHash = sync.OnceValue(func() string { return hashPassword("not a password of anyone") })

func hashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

func checkPassword(encoded, password string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// randomText is n random bytes, URL-safe.
func randomText(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
