package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
	name      string
}

func (li *LockInfo) String() string {
	return fmt.Sprintf("%s (host %s, pid %d) since %s", li.Purpose, li.Host, li.PID, li.Created.UTC().Format(time.RFC3339))
}

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r    *Repository
	mu   sync.Mutex
	info LockInfo
	stop chan struct{}
	done chan struct{}
	err  error
}

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
func (r *Repository) Lock(ctx context.Context, scope, purpose string, exclusive bool, wait time.Duration) (*Lock, error) {
	host, _ := os.Hostname()
	now := r.Clock().UTC()
	info := LockInfo{Scope: scope, Exclusive: exclusive, Purpose: purpose, Host: host, PID: os.Getpid(),
		Token: randomHex(16), Created: now, Refreshed: now}
	deadline := time.Now().Add(wait)
	delay := 200 * time.Millisecond
	for {
		name, err := r.writeLock(ctx, &info)
		if err != nil {
			return nil, err
		}
		info.name = name
		holder, err := r.conflictingLock(ctx, &info)
		if err != nil {
			r.deleteLock(name)
			return nil, err
		}
		if holder == nil {
			l := &Lock{r: r, info: info, stop: make(chan struct{}), done: make(chan struct{})}
			go l.refreshLoop()
			return l, nil
		}
		r.deleteLock(name)
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s is held by %s: %w", scope, holder, ErrLocked)
		}
		r.log.Info("waiting for lock", "scope", scope, "holder", holder.String())
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
		// A retry is a new claim: it must queue behind the holder.
		info.Created = r.Clock().UTC()
		info.Refreshed = info.Created
	}
}

func (r *Repository) writeLock(ctx context.Context, info *LockInfo) (string, error) {
	payload, err := json.Marshal(info)
	if err != nil {
		return "", err
	}
	name := "locks/" + randomHex(16)
	if err := r.putFreshObject(ctx, name, payload); err != nil {
		return "", fmt.Errorf("write lock: %w", err)
	}
	return name, nil
}

func (r *Repository) deleteLock(name string) {
	// A lock that cannot be deleted goes stale by itself; the caller's real
	// error matters more than this one.
	if err := r.be.Delete(context.Background(), name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		r.log.Warn("remove lock", "name", name, "err", err)
	}
}

// Locks lists the lock objects in the repository.
func (r *Repository) Locks(ctx context.Context) ([]*LockInfo, error) {
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

// conflictingLock returns the lock that wins over ours, if any: among
// conflicting locks the oldest claim wins, ties broken by name, so two
// processes that see each other agree on the winner.
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
			r.deleteLock(li.name)
			continue
		}
		if li.Created.Before(ours.Created) || (li.Created.Equal(ours.Created) && li.name < ours.name) {
			return li, nil
		}
	}
	return nil, nil
}

func (l *Lock) refreshLoop() {
	defer close(l.done)
	t := time.NewTicker(LockStaleAfter / 6)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			err := l.refresh()
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			if err != nil {
				l.r.log.Error("refresh lock", "scope", l.info.Scope, "err", err)
			}
		}
	}
}

// refresh writes a new lock object before removing the old one, so the
// scope is never unprotected.
func (l *Lock) refresh() error {
	l.mu.Lock()
	info := l.info
	l.mu.Unlock()
	info.Refreshed = l.r.Clock().UTC()
	name, err := l.r.writeLock(context.Background(), &info)
	if err != nil {
		return err
	}
	l.r.deleteLock(info.name)
	info.name = name
	l.mu.Lock()
	l.info = info
	l.mu.Unlock()
	return nil
}

// Err reports that the last refresh failed; a long job checks it before
// committing its result.
func (l *Lock) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	name := l.info.name
	l.mu.Unlock()
	l.r.deleteLock(name)
}
