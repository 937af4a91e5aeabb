package storagetest

import (
	"context"
	"fmt"
	"io"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// HoldingBackend wraps a backend so that a test can catch a Put in
// flight. A Put whose name Hold accepts is announced on Held (when not
// nil) and then waits for its context to end, returning the context's
// error: a stalled upload whose caller gives up. With StoreFirst the
// object is stored before the wait, as when the store kept it but its
// answer was lost. Every other call goes straight to the backend.
type HoldingBackend struct {
	storage.Backend
	Hold       func(name string) bool
	StoreFirst bool
	Held       chan string
}

// Put holds the call if Hold accepts name; see HoldingBackend.
func (h *HoldingBackend) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	if h.Hold == nil || !h.Hold(name) {
		return h.Backend.Put(ctx, name, body, size)
	}
	if h.StoreFirst {
		if err := h.Backend.Put(ctx, name, body, size); err != nil {
			return err
		}
	}
	if h.Held != nil {
		select {
		case h.Held <- name:
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	return fmt.Errorf("put %s: held until cancelled: %w", name, ctx.Err())
}
