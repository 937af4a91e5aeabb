// Package app is the application service: the one place where an action
// on an asset happens. It holds the policy, the logger, the clock, the
// registry of kinds and a pool of open repositories, and offers the
// actions (back up, restore, diff, export, find snapshots). The CLI is
// flags → service → printer; the daemon runs on the same service; what
// must see every action (audit, approvals, a fleet catalog) hooks in
// here once.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
	"golang.org/x/sys/unix"
)

// Service runs actions on the assets of one policy.
type Service struct {
	Policy *policy.Policy
	Kinds  *asset.Registry
	Log    *slog.Logger
	// Now is the one clock of the service: what it times, and what the
	// repositories it opens judge locks, grace periods and retention by
	// (tests play a host whose clock runs ahead with it).
	Now func() time.Time

	pool    *Pool
	ownPool bool // the service made its pool, and closes it
	auditor auditor
	// confined, when set, is the one repository the service opens (a
	// platform exercise on a fresh host, platform.go); guarded by pool.mu.
	confined string
}

// Pool keeps repositories open by what opens them (name, URL and
// credentials). Opening one unlocks its key (Argon2id for a passphrase:
// a tenth of a second of CPU), which a check of fifty assets every minute
// must not repeat for each; a daemon keeps one pool across policy
// reloads, and a changed repository is simply opened anew.
type Pool struct {
	mu    sync.Mutex
	repos map[string]*repo.Repository
	// fleets are the fleet catalogs opened (fleet.go), by URL and host.
	fleets map[string]*fleet.Store
}

// NewPool makes an empty pool.
func NewPool() *Pool { return &Pool{repos: map[string]*repo.Repository{}} }

// Close closes every repository of the pool.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for key, r := range p.repos {
		if err := r.Close(); err != nil {
			name, _, _ := strings.Cut(key, "\x00")
			errs = append(errs, fmt.Errorf("close repository %s: %w", name, err))
		}
	}
	p.repos = map[string]*repo.Repository{}
	for _, f := range p.fleets {
		f.Close()
	}
	p.fleets = nil
	return errors.Join(errs...)
}

// Options shape a Service.
type Options struct {
	Kinds *asset.Registry // nil: Kinds()
	Log   *slog.Logger
	Now   func() time.Time // nil: time.Now
	// Pool is shared with other services (a daemon's, across policy
	// reloads); nil: the service has its own, closed by Close.
	Pool *Pool
}

// Load reads the policy file at path with every registered kind and
// makes a service for it.
func Load(path string, o Options) (*Service, error) {
	if o.Kinds == nil {
		o.Kinds = Kinds()
	}
	p, err := LoadPolicy(path, o.Kinds)
	if err != nil {
		return nil, err
	}
	return New(p, o), nil
}

// LoadPolicy reads a policy whose assets may be of any registered kind;
// its errors are usage errors.
func LoadPolicy(path string, kinds *asset.Registry) (*policy.Policy, error) {
	p, err := policy.Load(path, kinds.Decoders())
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	if p.StateDirDefault {
		p.StateDir = defaultStateDir(p.StateDir, os.Stderr)
	}
	return p, nil
}

// defaultStateDir is where state goes when the policy does not say: dir
// (/var/lib/lifeboat) when this user can write it or create it, else the
// user's state directory ($XDG_STATE_HOME/lifeboat, ~/.local/state/lifeboat),
// said once, when that directory is first made. A DBA trying Lifeboat as
// postgres would otherwise have every run fail to record itself.
func defaultStateDir(dir string, say io.Writer) string {
	if writable(dir) {
		return dir
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return dir // the failure to write dir will say what is wrong
		}
		base = filepath.Join(home, ".local", "state")
	}
	mine := filepath.Join(base, "lifeboat")
	if _, err := os.Stat(mine); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(mine, 0o700); err != nil {
			return dir
		}
		fmt.Fprintf(say, "lifeboat: state_dir is not set and %s is not writable by this user: keeping state in %s (set state_dir in the policy to choose)\n", dir, mine)
	}
	return mine
}

// writable reports whether this user can write dir, or create it.
func writable(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil {
			return fi.IsDir() && unix.Access(d, unix.W_OK) == nil
		}
		if d == filepath.Dir(d) {
			return false
		}
	}
}

// New makes a service for a policy already loaded.
func New(p *policy.Policy, o Options) *Service {
	if o.Kinds == nil {
		o.Kinds = Kinds()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{Policy: p, Kinds: o.Kinds, Log: o.Log, Now: o.Now, pool: o.Pool}
	if s.pool == nil {
		s.pool, s.ownPool = NewPool(), true
	}
	return s
}

// Close closes the repositories the service opened, unless its pool is
// shared.
func (s *Service) Close() error {
	if !s.ownPool {
		return nil
	}
	return s.pool.Close()
}

// Asset finds an asset of the policy and its kind.
func (s *Service) Asset(name string) (*policy.Asset, asset.Kind, error) {
	a, err := s.Policy.Asset(name)
	if err != nil {
		return nil, nil, &asset.UsageError{Err: err}
	}
	k, err := s.Kinds.Kind(a.Kind)
	if err != nil {
		return nil, nil, fmt.Errorf("asset %s: %w", a.Name, err)
	}
	return a, k, nil
}

// RepositoryNamed opens the policy's repository called name; a name the
// policy does not have is a usage error.
func (s *Service) RepositoryNamed(ctx context.Context, name string) (*policy.Repository, *repo.Repository, error) {
	rp, err := s.Policy.Repository(name)
	if err != nil {
		return nil, nil, &asset.UsageError{Err: err}
	}
	r, err := s.Repository(ctx, rp)
	if err != nil {
		return nil, nil, err
	}
	return rp, r, nil
}

// Repository opens a repository of the policy, or returns the one
// already open.
func (s *Service) Repository(ctx context.Context, rp *policy.Repository) (*repo.Repository, error) {
	p := s.pool
	key := poolKey(rp)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := s.confinedOut(rp); err != nil {
		return nil, err
	}
	if r, ok := p.repos[key]; ok {
		return r, nil
	}
	r, err := OpenRepository(ctx, rp, s.Log, s.Now)
	if err != nil {
		return nil, err
	}
	p.repos[key] = r
	return r, nil
}

// poolKey is what a repository is kept open by in a pool.
func poolKey(rp *policy.Repository) string {
	return strings.Join([]string{rp.Name, rp.URL, rp.KeyFile, rp.Passphrase.Reveal(), rp.IdentityFile, rp.AccessKey.Reveal(), rp.SecretKey.Reveal()}, "\x00")
}

// lend puts a repository the caller opened (and will close) into the
// service's pool; the returned function takes it back out, before the
// service closes its pool.
func (s *Service) lend(rp *policy.Repository, r *repo.Repository) (giveBack func()) {
	key := poolKey(rp)
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	if _, ok := s.pool.repos[key]; ok {
		return func() {}
	}
	s.pool.repos[key] = r
	return func() {
		s.pool.mu.Lock()
		defer s.pool.mu.Unlock()
		if s.pool.repos[key] == r {
			delete(s.pool.repos, key)
		}
	}
}

// openedRepository returns the repository if the pool has it open
// already, without opening it.
func (s *Service) openedRepository(rp *policy.Repository) *repo.Repository {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return s.pool.repos[poolKey(rp)]
}

// OpenRepository opens one repository of a policy outside any pool; the
// caller closes it. clock, when not nil, is the repository's clock.
func OpenRepository(ctx context.Context, rp *policy.Repository, log *slog.Logger, clock func() time.Time) (*repo.Repository, error) {
	return openRepository(ctx, rp, log, clock, "")
}

// OpenRepositoryKeyCached is OpenRepository keeping the key a passphrase
// derives in a host-local cache under stateDir (repo.Secret.WithKeyCache),
// for wal-push, which runs once per WAL segment.
func OpenRepositoryKeyCached(ctx context.Context, rp *policy.Repository, stateDir string, log *slog.Logger, clock func() time.Time) (*repo.Repository, error) {
	return openRepository(ctx, rp, log, clock, KeyCacheDir(stateDir))
}

// KeyCacheDir is where the key cache lives in a state directory.
func KeyCacheDir(stateDir string) string { return filepath.Join(stateDir, "keycache") }

// OwnStateDir reports whether stateDir belongs to this process's user:
// only then may it keep a key cache there (wal-fetch run by a server of
// another user, in a drill, derives the key instead, without a warning
// per segment).
func OwnStateDir(stateDir string) bool {
	uid, ok := ownerOf(stateDir)
	return ok && uid == os.Geteuid()
}

// ownerOf is the uid that owns path; false when it cannot be told.
func ownerOf(path string) (int, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

func openRepository(ctx context.Context, rp *policy.Repository, log *slog.Logger, clock func() time.Time, keyCache string) (*repo.Repository, error) {
	be, err := OpenBackend(ctx, rp)
	if err != nil {
		return nil, err
	}
	sec, err := SecretFor(rp)
	if err != nil {
		return nil, err
	}
	if keyCache != "" {
		sec = sec.WithKeyCache(keyCache)
	}
	r, err := repo.Open(ctx, be, sec, log)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return nil, fmt.Errorf("open repository %s: %w", rp.Name, err)
	}
	if clock != nil {
		r.Clock = clock
	}
	r.SetIdentities(IdentitiesFor(rp))
	return r, nil
}

// IdentitiesFor loads the identity of a public-key repository from the
// policy, when it names one; it runs only when contents are read.
func IdentitiesFor(rp *policy.Repository) func() ([]*repo.Identity, error) {
	return func() ([]*repo.Identity, error) {
		if rp.IdentityFile == "" {
			return nil, nil
		}
		var sec repo.Secret
		var err error
		if rp.IdentityKeyFile != "" {
			sec, err = repo.KeyFile(rp.IdentityKeyFile)
		} else if sec, err = repo.Passphrase(rp.IdentityPassphrase.Reveal()); err != nil {
			err = fmt.Errorf("identity_passphrase: %w", err)
		}
		if err != nil {
			return nil, err
		}
		id, err := repo.ReadIdentityFile(rp.IdentityFile, sec)
		if err != nil {
			return nil, err
		}
		return []*repo.Identity{id}, nil
	}
}

// AssetRepository opens the asset's repository called name, or its
// primary when name is "".
func (s *Service) AssetRepository(ctx context.Context, a *policy.Asset, name string) (*repo.Repository, *policy.Repository, error) {
	rp, err := s.assetRepositoryPolicy(a, name)
	if err != nil {
		return nil, nil, err
	}
	r, err := s.Repository(ctx, rp)
	return r, rp, err
}

// assetRepositoryPolicy is the asset's repository called name in the
// policy, "" for its primary.
func (s *Service) assetRepositoryPolicy(a *policy.Asset, name string) (*policy.Repository, error) {
	rps, err := s.Policy.AssetRepositories(a)
	if err != nil {
		return nil, &asset.UsageError{Err: err}
	}
	rp := rps[0]
	if name != "" {
		rp = nil
		for _, c := range rps {
			if c.Name == name {
				rp = c
			}
		}
		if rp == nil {
			return nil, asset.Usagef("asset %s does not use repository %q (it uses %v)", a.Name, name, a.Repositories)
		}
	}
	return rp, nil
}

// OpenBackend turns a repository URL into a storage backend, wrapped in
// the retry decorator.
func OpenBackend(ctx context.Context, rp *policy.Repository) (storage.Backend, error) {
	u, err := url.Parse(rp.URL)
	if err != nil {
		return nil, fmt.Errorf("repository %s: url: %w", rp.Name, err)
	}
	switch u.Scheme {
	case "file":
		be, err := fs.Open(u.Path, fs.Options{AsOwner: rp.WriteAsOwner})
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return retry.New(be, retry.Options{}), nil
	case "s3":
		opts, err := s3.ParseURL(rp.URL)
		if err != nil {
			return nil, &asset.UsageError{Err: fmt.Errorf("repository %s: %w", rp.Name, err)}
		}
		opts.AccessKey, opts.SecretKey = rp.AccessKey.Reveal(), rp.SecretKey.Reveal()
		if rp.ObjectLock != "" {
			opts.LockMode, opts.RetainFor = rp.ObjectLock, rp.LockFor.Std()
		}
		be, err := s3.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return retry.New(be, retry.Options{}), nil
	}
	return nil, asset.Usagef("repository %s: unsupported url scheme %q", rp.Name, u.Scheme)
}

// SecretFor is what unlocks a repository of the policy: its key file or
// passphrase.
func SecretFor(rp *policy.Repository) (repo.Secret, error) {
	if rp.KeyFile != "" {
		s, err := repo.KeyFile(rp.KeyFile)
		if err != nil {
			return s, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return s, nil
	}
	s, err := repo.Passphrase(rp.Passphrase.Reveal())
	if err != nil {
		return s, &asset.UsageError{Err: fmt.Errorf("repository %s: %w", rp.Name, err)}
	}
	return s, nil
}
