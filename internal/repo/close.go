package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// lifetime is what Close must end: the writers whose uploaders still run
// and the locks whose refreshers do. Both register themselves when they
// start and leave when they end.
type lifetime struct {
	mu      sync.Mutex
	closed  bool
	writers map[*Writer]struct{}
	locks   map[*Lock]struct{}

	once sync.Once
	err  error
}

// errRepositoryClosed fails what is started on a closed repository.
var errRepositoryClosed = fmt.Errorf("repository closed: %w", storage.ErrClosed)

// releaseTimeout bounds the release of a lock, which runs on a context of
// its own: a cancelled job must still give its lock up, but not wait on a
// store that does not answer.
const releaseTimeout = 15 * time.Second

// detached returns a context that keeps ctx's values but not its
// cancellation, for the clean-up a cancelled job still owes the
// repository (releasing its lock), bounded by releaseTimeout.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
}

// Close ends the repository's life. Writers still open are aborted: their
// uploads are cancelled and nothing they stored is referenced. Locks still
// held are released: nothing can be written through the repository after
// Close, so they protect nothing. Then the backend is closed, which Open
// took over. Close is idempotent and returns the first call's result; any
// call that reaches the storage after it fails with an error matching
// storage.ErrClosed.
func (r *Repository) Close() error {
	r.life.once.Do(func() {
		r.life.mu.Lock()
		r.life.closed = true
		writers, locks := r.life.writers, r.life.locks
		r.life.writers, r.life.locks = nil, nil
		r.life.mu.Unlock()
		// Writers first: what they upload is protected by the locks.
		for w := range writers {
			r.log.Warn("repository closed with a writer open; its uploads are cancelled", "repository", r.Location())
			w.Abort()
		}
		for l := range locks {
			r.log.Warn("repository closed with a lock held; releasing it", "scope", l.scope)
			l.Unlock()
		}
		r.life.err = r.be.Close()
	})
	return r.life.err
}

// addWriter registers a running writer; it fails once the repository is
// closed.
func (r *Repository) addWriter(w *Writer) error {
	r.life.mu.Lock()
	defer r.life.mu.Unlock()
	if r.life.closed {
		return errRepositoryClosed
	}
	if r.life.writers == nil {
		r.life.writers = map[*Writer]struct{}{}
	}
	r.life.writers[w] = struct{}{}
	return nil
}

func (r *Repository) removeWriter(w *Writer) {
	r.life.mu.Lock()
	delete(r.life.writers, w)
	r.life.mu.Unlock()
}

// addLock registers a held lock; it fails once the repository is closed.
func (r *Repository) addLock(l *Lock) error {
	r.life.mu.Lock()
	defer r.life.mu.Unlock()
	if r.life.closed {
		return errRepositoryClosed
	}
	if r.life.locks == nil {
		r.life.locks = map[*Lock]struct{}{}
	}
	r.life.locks[l] = struct{}{}
	return nil
}

func (r *Repository) removeLock(l *Lock) {
	r.life.mu.Lock()
	delete(r.life.locks, l)
	r.life.mu.Unlock()
}

// mayBeStored reports whether a Put that failed with err may have stored
// the object all the same: it was cut off, or its acknowledgement lost. A
// permanent refusal (a denied credential, a closed backend) stored nothing.
func mayBeStored(err error) bool {
	return !storage.IsPermanent(err) || errors.Is(err, context.Canceled)
}
