package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// AuditArea holds the sealed heads of audit chains (internal/audit):
// audit/<chain>/<head, 20 digits>-<first event, 20 digits>, named objects
// like the others, sealed with the repository key and bound to their
// name, so that nobody without the key can plant or alter one. They are
// written once and never rewritten; on a store with object lock they are
// retained for the policy's audit retention.
const AuditArea = "audit"

// PutAuditSeal stores a sealed head of chain under rel and, on a store
// that retains objects, keeps it until retainUntil. Storing the same
// seal again succeeds.
func (r *Repository) PutAuditSeal(ctx context.Context, chain, rel string, payload []byte, retainUntil time.Time) error {
	if _, err := r.PutNamed(ctx, AuditArea, chain, rel, payload, CodecZstd); err != nil {
		return fmt.Errorf("seal audit chain %s in %s: %w", chain, r.Location(), err)
	}
	ret, ok := storage.Capability[storage.Retainer](r.be)
	if !ok || retainUntil.IsZero() {
		return nil
	}
	name := r.NamedObject(AuditArea, chain, rel)
	// A backup host's credential may not change retention (its role,
	// docs/storage.md): the seal then keeps the lock every new object
	// gets, and is sealed all the same.
	if err := ret.ExtendRetention(ctx, name, retainUntil); err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrPermission) {
		return fmt.Errorf("retain audit seal %s: %w", name, err)
	}
	return nil
}

// AuditSealInfo is a sealed head as listed: its chain, its name in the
// chain's part of the area, and when the store says it was written.
type AuditSealInfo struct {
	Chain, Rel string
	Time       time.Time
}

// AuditSeals lists the sealed heads of every chain the repository holds.
func (r *Repository) AuditSeals(ctx context.Context) ([]AuditSealInfo, error) {
	var chains []string
	seen := map[string]bool{}
	err := r.be.List(ctx, AuditArea+"/", func(oi storage.ObjectInfo) error {
		rest := strings.TrimPrefix(oi.Name, AuditArea+"/")
		chain, _, ok := strings.Cut(rest, "/")
		if ok && !seen[chain] && namePart.MatchString(chain) {
			seen[chain] = true
			chains = append(chains, chain)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit seals: %w", err)
	}
	var out []AuditSealInfo
	for _, chain := range chains {
		err := r.ListNamedInfo(ctx, AuditArea, chain, "", func(rel string, oi storage.ObjectInfo) error {
			out = append(out, AuditSealInfo{Chain: chain, Rel: rel, Time: oi.ModTime})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list audit seals of chain %s: %w", chain, err)
		}
	}
	return out, nil
}

// GetAuditSeal reads one sealed head; one that does not authenticate is
// ErrUnauthentic (planted without the key, or damaged).
func (r *Repository) GetAuditSeal(ctx context.Context, chain, rel string) ([]byte, error) {
	return r.GetNamed(ctx, AuditArea, chain, rel)
}

// DeleteAuditSeal removes a sealed head past the audit retention; under
// object lock the store refuses until then.
func (r *Repository) DeleteAuditSeal(ctx context.Context, chain, rel string) error {
	return r.DeleteNamed(ctx, AuditArea, chain, rel)
}
