package approval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// Area is where requests live in a repository: approvals/<id>/request,
// the approvers' signatures approvals/<id>/sig-<16 hex>, and the mark of
// its use approvals/<id>/used. Every one is a named object: sealed with
// the repository key, bound to its name, written once.
const Area = "approvals"

const (
	requestRel = "request"
	usedRel    = "used"
	sigPrefix  = "sig-"
)

// ErrNotFound is matched when no repository holds the request.
var ErrNotFound = errors.New("no such approval request")

// ErrUsed is matched by a request that was used before.
var ErrUsed = errors.New("approval request used already")

// Store writes a new request into r.
func Store(ctx context.Context, r *repo.Repository, q *Request) error {
	doc, err := q.Marshal()
	if err != nil {
		return err
	}
	existed, err := r.PutNamed(ctx, Area, q.ID, requestRel, doc, repo.CodecZstd)
	if err != nil {
		return fmt.Errorf("store approval request %s in %s: %w", q.ID, r.Location(), err)
	}
	if existed {
		return fmt.Errorf("store approval request %s in %s: a request of that id exists", q.ID, r.Location())
	}
	return nil
}

// Load reads the request id from r; one that is absent, or whose object
// does not authenticate, matches ErrNotFound.
func Load(ctx context.Context, r *repo.Repository, id string) (*Request, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("%q is not an approval request id (they look like 20261205T071500Z-1a2b3c4d): %w", id, ErrNotFound)
	}
	data, err := r.GetNamed(ctx, Area, id, requestRel)
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, repo.ErrUnauthentic) {
		return nil, fmt.Errorf("approval request %s is not in %s: %w", id, r.Location(), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read approval request %s: %w", id, err)
	}
	return Unmarshal(id, data)
}

// List reads every request r holds, oldest first. An object that does not
// authenticate is skipped (the repository notes it), so that one planted
// object does not hide the genuine requests; a request whose document is
// damaged is returned in bad.
func List(ctx context.Context, r *repo.Repository) (reqs []*Request, bad []error, err error) {
	ids, err := r.NamedGroups(ctx, Area)
	if err != nil {
		return nil, nil, fmt.Errorf("list approval requests in %s: %w", r.Location(), err)
	}
	for _, id := range ids {
		if !ValidID(id) {
			continue
		}
		q, err := Load(ctx, r, id)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case errors.Is(err, ErrInvalid):
			bad = append(bad, err)
			continue
		case err != nil:
			return reqs, bad, err
		}
		reqs = append(reqs, q)
	}
	return reqs, bad, nil
}

// AddSignature stores an approver's armored sshsig signature of the
// request id. Storing the same signature twice is harmless.
func AddSignature(ctx context.Context, r *repo.Repository, id string, armored []byte) error {
	sum := sha256.Sum256(armored)
	rel := sigPrefix + hex.EncodeToString(sum[:8])
	if _, err := r.PutNamed(ctx, Area, id, rel, armored, repo.CodecZstd); err != nil {
		return fmt.Errorf("store signature of approval request %s in %s: %w", id, r.Location(), err)
	}
	return nil
}

// Signatures reads the signatures stored with request id. Objects that do
// not authenticate are skipped and noted by the repository; whether a
// signature is an approval is for Check to say.
func Signatures(ctx context.Context, r *repo.Repository, id string) ([][]byte, error) {
	var rels []string
	if err := r.ListNamed(ctx, Area, id, sigPrefix, func(rel string, _ int64) error {
		rels = append(rels, rel)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list signatures of approval request %s: %w", id, err)
	}
	var out [][]byte
	for _, rel := range rels {
		if strings.Contains(rel, "/") {
			continue
		}
		data, err := r.GetNamed(ctx, Area, id, rel)
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, repo.ErrUnauthentic) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read signature %s of approval request %s: %w", rel, id, err)
		}
		out = append(out, data)
	}
	return out, nil
}

// Use is the record of a request's use.
type Use struct {
	Used time.Time `json:"used"`
	By   Requester `json:"by"`
}

// Used reports whether the request was used: anything stored under its
// use mark's name counts, authentic or not, so that an attacker who can
// only put objects can at worst spend a request, never revive one.
func Used(ctx context.Context, r *repo.Repository, id string) (bool, error) {
	ok, err := r.HasNamed(ctx, Area, id, usedRel)
	if err != nil {
		return false, fmt.Errorf("approval request %s: %w", id, err)
	}
	return ok, nil
}

// MarkUsed claims the request for one run: the mark is written once
// (create-if-absent), so of two runs racing on one request only one
// proceeds; the other gets ErrUsed.
func MarkUsed(ctx context.Context, r *repo.Repository, id string, u Use) error {
	if used, err := Used(ctx, r, id); err != nil {
		return err
	} else if used {
		return fmt.Errorf("approval request %s: %w", id, ErrUsed)
	}
	doc, err := json.Marshal(u)
	if err != nil {
		return err
	}
	existed, err := r.PutNamed(ctx, Area, id, usedRel, doc, repo.CodecZstd)
	if existed || errors.Is(err, repo.ErrConflict) {
		return fmt.Errorf("approval request %s: %w", id, ErrUsed)
	}
	if err != nil {
		return fmt.Errorf("mark approval request %s used: %w", id, err)
	}
	return nil
}
