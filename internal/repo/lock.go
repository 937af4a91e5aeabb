package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrLocked is returned (wrapped) when a conflicting lock is held.
var ErrLocked = errors.New("locked")

// LockStaleAfter is how long a lock that is not refreshed stays valid. A
// holder refreshes every LockStaleAfter/6.
const LockStaleAfter = 30 * time.Minute

// LockInfo is the content of a lock object.
type LockInfo struct {
	Scope     string    `json:"scope"`
	Exclusive bool      `json:"exclusive"`
	Purpose   string    `json:"purpose"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Token     string    `json:"token"` // the same across refreshes of one lock
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
	// Released marks a lock given up by a holder whose credential may not
	// delete (a put-only backup role): the lock is over, and expire
	// removes its objects.
	Released bool `json:"released,omitempty"`
	name     string
}

func (li *LockInfo) String() string {
	return fmt.Sprintf("%s (host %s, pid %d) since %s", li.Purpose, li.Host, li.PID, li.Created.UTC().Format(time.RFC3339))
}

// Lock is a held lock; Unlock releases it. It is refreshed in the
// background under the context it was taken with, until Unlock or the end
// of that context.
type Lock struct {
	r     *Repository
	ctx   context.Context // the holder's, for the refreshes and (detached) the release
	scope string
	mu    sync.Mutex
	info  LockInfo
	// strays are other objects of this lock that may exist: a refresh cut
	// off after its Put may have stored one, a failed delete left one.
	// The release removes them too, so that no claim outlives the lock.
	strays []string
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// errUnlocked ends the refresh loop of a lock released by its holder.
var errUnlocked = errors.New("lock released")

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("read random: %v", err))
	}
	return hex.EncodeToString(b)
}

// Lock takes a lock on scope (for example "asset/ledger"). Two locks on one
// scope conflict when either is exclusive. When a conflicting lock is held
// it retries until wait has passed, then fails with ErrLocked naming the
// holder. A lock whose holder died on this host, or that was not refreshed
// for LockStaleAfter, is removed.
//
// A claim is written first and checked after: it stands only when the
// listing made after writing it shows no conflicting lock. Two processes
// that claim at once can then both back off, but never both win, whatever
// their clocks say (an order by claimed time let a claimant that stamped
// early and wrote late win over a holder that had already checked).
//
// The lock is refreshed under ctx: once ctx is done it is no longer
// refreshed, and Err and Check report so. Unlock releases it even then.
func (r *Repository) Lock(ctx context.Context, scope, purpose string, exclusive bool, wait time.Duration) (*Lock, error) {
	host, _ := os.Hostname()
	deadline := time.Now().Add(wait)
	delay := 200 * time.Millisecond
	for collisions := 0; ; {
		now := r.Clock().UTC()
		// A new token each round: an earlier claim of ours may already be
		// ended by a release record carrying its token.
		info := LockInfo{Scope: scope, Exclusive: exclusive, Purpose: purpose, Host: host, PID: os.Getpid(),
			Token: randomHex(16), Created: now, Refreshed: now, name: newLockName()}
		// A lock held before we claim refuses us without a claim written.
		holder, err := r.conflictingLock(ctx, &info)
		if err != nil {
			return nil, err
		}
		if holder == nil {
			if err := r.writeLock(ctx, &info); err != nil {
				if mayBeStored(err) {
					r.release(ctx, info, nil)
				}
				return nil, err
			}
			holder, err = r.conflictingLock(ctx, &info)
			if err != nil {
				r.release(ctx, info, nil)
				return nil, err
			}
			if holder == nil {
				return r.hold(ctx, info)
			}
			r.release(ctx, info, nil)
			// Claims that collided back off for a random while and look
			// again, even without a wait: the other side may have backed
			// off too, and one of us should get the lock.
			if collisions < 5 {
				collisions++
				if err := sleepCtx(ctx, jitter(50*time.Millisecond, 250*time.Millisecond)); err != nil {
					return nil, err
				}
				continue
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s is held by %s: %w", scope, holder, ErrLocked)
		}
		r.log.Info("waiting for lock", "scope", scope, "holder", holder.String())
		if err := sleepCtx(ctx, delay+jitter(0, delay/4)); err != nil {
			return nil, err
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// hold starts holding a lock whose claim stood.
func (r *Repository) hold(ctx context.Context, info LockInfo) (*Lock, error) {
	lctx, cancel := context.WithCancelCause(ctx)
	l := &Lock{r: r, ctx: ctx, scope: info.Scope, info: info, cancel: cancel, done: make(chan struct{})}
	if err := r.addLock(l); err != nil {
		cancel(err)
		r.release(ctx, info, nil)
		return nil, err
	}
	go l.refreshLoop(lctx)
	return l, nil
}

// jitter is a random duration in [lo, hi).
func jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(mrand.Int64N(int64(hi-lo)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newLockName picks the name of a new lock object.
func newLockName() string { return "locks/" + randomHex(16) }

// writeLock stores info as the lock object info.name. When it fails, the
// object may still have been stored (see mayBeStored).
func (r *Repository) writeLock(ctx context.Context, info *LockInfo) error {
	payload, err := json.Marshal(info)
	if err != nil {
		return err
	}
	if err := r.putFreshObject(ctx, info.name, payload); err != nil {
		return fmt.Errorf("write lock: %w", err)
	}
	return nil
}

func (r *Repository) deleteLock(ctx context.Context, name string) {
	// A lock that cannot be deleted goes stale by itself; the caller's real
	// error matters more than this one.
	if err := r.be.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.log.Warn("remove lock", "name", name, "err", err)
	}
}

// release ends a lock whose object is info.name, with strays, on a
// context detached from ctx: a job that was cancelled, or failed, still
// gives its lock up rather than leave it to go stale.
func (r *Repository) release(ctx context.Context, info LockInfo, strays []string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	r.releaseLock(ctx, info, strays)
}

// releaseLock ends a lock. A credential that may not delete writes a
// release record instead, which ends the lock for everyone who reads it.
func (r *Repository) releaseLock(ctx context.Context, info LockInfo, strays []string) {
	for _, n := range strays {
		// A stray that cannot be deleted carries the lock's token: the
		// release record below ends it with the rest.
		if err := r.be.Delete(ctx, n); err != nil && !errors.Is(err, storage.ErrNotFound) &&
			!errors.Is(err, storage.ErrPermission) && !errors.Is(err, storage.ErrRetained) {
			r.log.Warn("remove lock object", "name", n, "err", err)
		}
	}
	err := r.be.Delete(ctx, info.name)
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		return
	}
	// Without the right to delete, or with the lock object itself under
	// object lock, a release record ends the lock.
	if errors.Is(err, storage.ErrPermission) || errors.Is(err, storage.ErrRetained) {
		info.Released = true
		info.name = newLockName()
		if werr := r.writeLock(ctx, &info); werr == nil {
			return
		} else {
			err = werr
		}
	}
	r.log.Warn("release lock", "scope", info.Scope, "err", err)
}

// CleanLocks removes the objects of released and stale locks; it needs a
// credential that may delete.
func (r *Repository) CleanLocks(ctx context.Context) (int, error) {
	infos, err := r.lockObjects(ctx)
	if err != nil {
		return 0, err
	}
	released := releasedTokens(infos)
	n := 0
	for _, li := range infos {
		if released[li.Token] || r.stale(li) {
			err := r.be.Delete(ctx, li.name)
			if errors.Is(err, storage.ErrRetained) {
				continue // goes at a later run
			}
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				return n, fmt.Errorf("remove lock %s: %w", li.name, err)
			}
			n++
		}
	}
	return n, nil
}

// Locks lists the locks held, oldest claim first.
func (r *Repository) Locks(ctx context.Context) ([]*LockInfo, error) {
	infos, err := r.lockObjects(ctx)
	if err != nil {
		return nil, err
	}
	released := releasedTokens(infos)
	var out []*LockInfo
	for _, li := range infos {
		if !released[li.Token] {
			out = append(out, li)
		}
	}
	return out, nil
}

// releasedTokens lists the tokens of locks ended by a release record.
func releasedTokens(infos []*LockInfo) map[string]bool {
	released := map[string]bool{}
	for _, li := range infos {
		if li.Released {
			released[li.Token] = true
		}
	}
	return released
}

// lockObjects reads every lock object, release records included. An
// object that does not authenticate is no lock (anyone with a put-only
// credential could plant one to block every backup): it is skipped and
// noted.
func (r *Repository) lockObjects(ctx context.Context) ([]*LockInfo, error) {
	names, err := r.listNames(ctx, "locks/")
	if err != nil {
		return nil, err
	}
	var out []*LockInfo
	for _, n := range names {
		plain, err := r.getObject(ctx, n)
		if errors.Is(err, storage.ErrNotFound) {
			continue // released meanwhile
		}
		if err != nil && r.skippable(n, err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read lock %s: %w", n, err)
		}
		var li LockInfo
		if err := json.Unmarshal(plain, &li); err != nil {
			return nil, fmt.Errorf("parse lock %s: %v: %w", n, err, ErrCorrupt)
		}
		li.name = n
		out = append(out, &li)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].name < out[j].name
	})
	return out, nil
}

// stale reports whether a lock no longer protects anything.
func (r *Repository) stale(li *LockInfo) bool {
	if r.Clock().Sub(li.Refreshed) > LockStaleAfter {
		return true
	}
	host, _ := os.Hostname()
	if li.Host == host && li.PID > 0 && li.PID != os.Getpid() {
		if err := syscall.Kill(li.PID, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
	}
	return false
}

// conflictingLock returns a lock other than ours that conflicts with it,
// if any; which of the two was claimed first does not matter.
func (r *Repository) conflictingLock(ctx context.Context, ours *LockInfo) (*LockInfo, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, err
	}
	for _, li := range locks {
		if li.Token == ours.Token || li.Scope != ours.Scope || (!li.Exclusive && !ours.Exclusive) {
			continue
		}
		if r.stale(li) {
			r.log.Warn("removing stale lock", "scope", li.Scope, "holder", li.String())
			r.deleteLock(ctx, li.name)
			continue
		}
		return li, nil
	}
	return nil, nil
}

// refreshLoop refreshes the lock until ctx ends: at Unlock, or when the
// holder's context does, which Err reports from then on.
func (l *Lock) refreshLoop(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(LockStaleAfter / 6)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, errUnlocked) {
				l.setErr(fmt.Errorf("lock on %s is no longer refreshed: %w", l.scope, cause))
			}
			return
		case <-t.C:
			err := l.refresh(ctx)
			if ctx.Err() != nil {
				continue // cut off: the case above says why
			}
			l.setErr(err)
			if err != nil {
				l.r.log.Error("refresh lock", "scope", l.scope, "err", err)
			}
			if errors.Is(err, ErrLocked) {
				return // lost for good
			}
		}
	}
}

func (l *Lock) setErr(err error) {
	l.mu.Lock()
	l.err = err
	l.mu.Unlock()
}

// addStray notes an object of this lock that may exist besides the
// current one, for the release to remove.
func (l *Lock) addStray(name string) {
	l.mu.Lock()
	l.strays = append(l.strays, name)
	l.mu.Unlock()
}

// refresh writes a new lock object before removing the old one, so the
// scope is never unprotected. Cut off by ctx, it leaves no object behind
// that the release would not find.
func (l *Lock) refresh(ctx context.Context) error {
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	// A lock object that vanished was taken for stale by another process
	// (this one was paused or cut off); what it protected is no longer
	// protected, and the holder must not commit.
	if _, err := l.r.be.Stat(ctx, info.name); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("lock on %s was removed by another process as stale: %w", info.Scope, ErrLocked)
	}
	old := info.name
	info.Refreshed = l.r.Clock().UTC()
	info.name = newLockName()
	if err := l.r.writeLock(ctx, &info); err != nil {
		if mayBeStored(err) {
			l.addStray(info.name)
		}
		return err
	}
	l.mu.Lock()
	l.info = info
	l.mu.Unlock()
	// Without the right to delete, the old object stays beside the new
	// one; both carry the same token, and expire removes it once stale
	// (or the release record ends it).
	if err := l.r.be.Delete(ctx, old); err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrPermission) && !errors.Is(err, storage.ErrRetained) {
		l.addStray(old)
		if ctx.Err() == nil {
			l.r.log.Warn("remove old lock object", "name", old, "err", err)
		}
	}
	return nil
}

// Err reports that the last refresh failed, or that refreshing stopped
// because the context the lock was taken with ended; a long job checks it
// before committing its result.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Check confirms, just before a job commits, that the lock still stands:
// its object is there and it was refreshed recently enough that nobody
// could have taken it for stale.
func (l *Lock) Check(ctx context.Context) error {
	if err := l.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	if age := l.r.Clock().Sub(info.Refreshed); age > LockStaleAfter-time.Minute {
		return fmt.Errorf("lock on %s was not refreshed for %s (was the process paused?) and may have been taken over: %w", info.Scope, age.Round(time.Second), ErrLocked)
	}
	if _, err := l.r.be.Stat(ctx, info.name); errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("lock on %s was removed by another process as stale: %w", info.Scope, ErrLocked)
	} else if err != nil {
		return fmt.Errorf("check lock on %s: %w", info.Scope, err)
	}
	return nil
}

// Unlock releases the lock. It stops the refreshes, cutting one in flight
// short, and removes the lock's objects on a context of its own, bounded
// but detached from the one the lock was taken with: a cancelled job must
// not leave its lock behind for others to wait out. Unlock may be called
// more than once, and after the repository's Close, which released the
// lock already.
func (l *Lock) Unlock() {
	l.once.Do(func() {
		l.cancel(errUnlocked)
		<-l.done
		l.mu.Lock()
		info, strays := l.info, l.strays
		l.mu.Unlock()
		l.r.release(l.ctx, info, strays)
		l.r.removeLock(l)
	})
}
