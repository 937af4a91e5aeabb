// Package retry wraps a storage.Backend so that transient failures (a dropped
// connection, a throttled request, a full disk freed a moment later) are
// retried with exponential backoff, keeping retry loops out of every backend
// and every caller.
//
// An error is retried unless storage.IsPermanent reports it, or the context
// is done. What each call retries:
//
//   - Put seeks the body back to the start before every new attempt. A Put
//     whose attempt failed after the store had in fact kept the object (the
//     acknowledgement was lost) sees ErrExists on the next attempt. The
//     decorator cannot tell that apart from a genuine collision, because it
//     cannot compare contents generically, so it returns the error matching
//     storage.ErrExists with a note that an earlier attempt may have stored
//     the object. Callers that see ErrExists must check the stored content
//     themselves (the repository layer does, by content hash).
//   - Get and GetRange retry opening the object only; an error while reading
//     the returned stream is the caller's to handle.
//   - List resumes after the last name it delivered, so fn never sees a name
//     twice. An error returned by fn is never retried.
//   - Delete likewise: ErrNotFound after a transient failure may mean the
//     failed attempt removed the object. The error still matches
//     storage.ErrNotFound, as the contract says, and notes the earlier
//     attempts; callers that only want the object gone (prune) accept it.
//
// Cancelling the context stops the retrying at once: a call that failed
// is not tried again once its context is done, and the wait between two
// attempts ends with the context. Close is forwarded to the wrapped
// backend; calls after it fail with storage.ErrClosed, which is permanent
// and so never retried.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Options tunes the retry policy. Zero fields take the defaults.
type Options struct {
	// MaxAttempts is the total number of attempts, the first included
	// (default 6).
	MaxAttempts int
	// InitialDelay is the wait before the second attempt (default 100ms); it
	// doubles each attempt after that.
	InitialDelay time.Duration
	// MaxDelay caps the wait between attempts (default 10s).
	MaxDelay time.Duration
	// Logger receives one warning per retried failure (default: discard).
	Logger *slog.Logger
}

// Defaults for Options.
const (
	DefaultMaxAttempts  = 6
	DefaultInitialDelay = 100 * time.Millisecond
	DefaultMaxDelay     = 10 * time.Second
)

type backend struct {
	be   storage.Backend
	opts Options
}

var _ storage.Backend = (*backend)(nil)

// New returns be wrapped so that its calls are retried on transient errors.
func New(be storage.Backend, opts Options) storage.Backend {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.InitialDelay <= 0 {
		opts.InitialDelay = DefaultInitialDelay
	}
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.InitialDelay {
		opts.MaxDelay = opts.InitialDelay
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b := &backend{be: be, opts: opts}
	// Retention is an optional capability; hiding it behind the decorator
	// would silently turn object lock handling off.
	if ret, ok := be.(storage.Retainer); ok {
		return withVersions(be, b, &retainer{backend: b, ret: ret})
	}
	return withVersions(be, b, b)
}

// retainer is the decorator for backends that keep objects under retention.
type retainer struct {
	*backend
	ret storage.Retainer
}

func (b *retainer) Retention(ctx context.Context, name string) (time.Time, string, error) {
	var until time.Time
	var mode string
	n, err := b.do(ctx, "retention", name, func(int) error {
		var err error
		until, mode, err = b.ret.Retention(ctx, name)
		return err
	})
	if err != nil {
		return time.Time{}, "", annotate(ctx, "retention", name, n, err)
	}
	return until, mode, nil
}

func (b *retainer) ExtendRetention(ctx context.Context, name string, until time.Time) error {
	n, err := b.do(ctx, "extend retention", name, func(int) error {
		return b.ret.ExtendRetention(ctx, name, until)
	})
	return annotate(ctx, "extend retention", name, n, err)
}

// Log keys, constant so that log lines can be searched.
const (
	logKeyOp       = "op"
	logKeyName     = "name"
	logKeyLocation = "location"
	logKeyAttempt  = "attempt"
	logKeyDelay    = "delay"
	logKeyErr      = "err"
)

// do runs f until it succeeds, fails permanently, the attempts run out or ctx
// is done. f receives the attempt number, starting at 1. It returns the
// number of attempts made and the last error, as f returned it.
func (b *backend) do(ctx context.Context, op, name string, f func(attempt int) error) (int, error) {
	for attempt := 1; ; attempt++ {
		err := f(attempt)
		if err == nil || storage.IsPermanent(err) || ctx.Err() != nil || attempt >= b.opts.MaxAttempts {
			return attempt, err
		}
		delay := b.backoff(attempt)
		b.opts.Logger.Warn("storage operation failed, retrying",
			logKeyOp, op, logKeyName, name, logKeyLocation, b.be.Location(),
			logKeyAttempt, attempt, logKeyDelay, delay, logKeyErr, err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempt, err
		case <-t.C:
		}
	}
}

// backoff returns the wait after the given failed attempt: exponential, capped,
// with the upper half jittered so that many clients that failed together do
// not retry together.
func (b *backend) backoff(attempt int) time.Duration {
	d := b.opts.InitialDelay
	for i := 1; i < attempt && d < b.opts.MaxDelay; i++ {
		d *= 2
	}
	d = min(d, b.opts.MaxDelay)
	half := d / 2
	return half + rand.N(d-half+1)
}

// annotate adds the attempt count to an error that ended a retried call, and
// the cancellation if that is what stopped the retrying.
func annotate(ctx context.Context, op, name string, attempts int, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%s %s: stopped after %d attempts: %w (last error: %v)", op, name, attempts, ctx.Err(), err)
	case attempts <= 1:
		return err
	}
	return fmt.Errorf("%s %s: after %d attempts: %w", op, name, attempts, err)
}

func (b *backend) Location() string { return b.be.Location() }

// Close closes the wrapped backend.
func (b *backend) Close() error { return b.be.Close() }

// Unwrap returns the wrapped backend, for storage.Capability.
func (b *backend) Unwrap() storage.Backend { return b.be }

func (b *backend) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	n, err := b.do(ctx, "put", name, func(attempt int) error {
		if attempt > 1 {
			if _, err := body.Seek(0, io.SeekStart); err != nil {
				return storage.Permanent(fmt.Errorf("rewind body for retry: %w", err))
			}
		}
		return b.be.Put(ctx, name, body, size)
	})
	if n > 1 && errors.Is(err, storage.ErrExists) {
		return fmt.Errorf("put %s: an earlier of %d attempts may have stored it: %w", name, n, err)
	}
	return annotate(ctx, "put", name, n, err)
}

func (b *backend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	var rc io.ReadCloser
	n, err := b.do(ctx, "get", name, func(int) error {
		var err error
		rc, err = b.be.Get(ctx, name)
		return err
	})
	if err != nil {
		return nil, annotate(ctx, "get", name, n, err)
	}
	return rc, nil
}

func (b *backend) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	var rc io.ReadCloser
	n, err := b.do(ctx, "get range of", name, func(int) error {
		var err error
		rc, err = b.be.GetRange(ctx, name, offset, length)
		return err
	})
	if err != nil {
		return nil, annotate(ctx, "get range of", name, n, err)
	}
	return rc, nil
}

func (b *backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	var info storage.ObjectInfo
	n, err := b.do(ctx, "stat", name, func(int) error {
		var err error
		info, err = b.be.Stat(ctx, name)
		return err
	})
	if err != nil {
		return storage.ObjectInfo{}, annotate(ctx, "stat", name, n, err)
	}
	return info, nil
}

func (b *backend) Delete(ctx context.Context, name string) error {
	n, err := b.do(ctx, "delete", name, func(int) error {
		return b.be.Delete(ctx, name)
	})
	if n > 1 && errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("delete %s: an earlier of %d attempts may have removed it: %w", name, n, err)
	}
	return annotate(ctx, "delete", name, n, err)
}

// callerError carries an error returned by List's fn through the retry loop,
// which must hand it back untouched rather than retry it.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }

func (b *backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	var (
		last      string
		delivered bool
		fnErr     *callerError
	)
	n, err := b.do(ctx, "list", prefix, func(int) error {
		err := b.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
			// Names come in lexical order, so a resumed listing skips
			// everything up to the last name already handed over.
			if delivered && oi.Name <= last {
				return nil
			}
			if err := fn(oi); err != nil {
				fnErr = &callerError{err}
				return storage.Permanent(fnErr)
			}
			last, delivered = oi.Name, true
			return nil
		})
		if fnErr != nil {
			return storage.Permanent(fnErr)
		}
		return err
	})
	if fnErr != nil {
		return fnErr.err
	}
	return annotate(ctx, "list", prefix, n, err)
}
