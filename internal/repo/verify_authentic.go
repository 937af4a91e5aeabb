package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// verifyAuthentic reads the objects Verify does not otherwise read (every
// mark and lock), so that it meets every object a put-only credential may
// have planted there, and reports each unauthentic object met since mark:
// in the index, the snapshots, the marks, the locks, and any named object
// read meanwhile.
func (r *Repository) verifyAuthentic(ctx context.Context, rep *VerifyReport, mark uint64) error {
	names, err := r.markNames(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		_, err := r.loadMark(ctx, n)
		if err != nil && !errors.Is(err, storage.ErrNotFound) && !r.skippable(n, err) {
			rep.addf("%s: %v", n, err)
		}
	}
	if _, err := r.lockObjects(ctx); err != nil {
		rep.addf("locks: %v", err)
	}
	if _, err := r.Pins(ctx); err != nil {
		rep.addf("pins: %v", err)
	}
	rep.Unauthentic = r.UnauthenticSince(mark)
	for _, u := range rep.Unauthentic {
		rep.addf("%s", UnauthenticProblem(u))
	}
	return nil
}

// UnauthenticProblem is how verify and check word an unauthentic object.
func UnauthenticProblem(u Unauthentic) string {
	return fmt.Sprintf("%s is not authentic (planted without the key, or damaged), skipped: %s", u.Name, u.Reason)
}
