package repo

import (
	"context"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// NamedGroups lists the distinct second parts of the named objects of an
// area (the <asset> of area/<asset>/<rel>), in lexical order. Approval
// requests use it: each request is a group of objects, area
// approvals/<request id>/..., and a request is found by its id alone.
// A name whose part is not a valid name part (planted by a put-only
// credential) is skipped: nothing is read here, so nothing is trusted
// either, and each group's objects authenticate when they are read.
func (r *Repository) NamedGroups(ctx context.Context, area string) ([]string, error) {
	prefix := area + "/"
	var out []string
	err := r.be.List(ctx, prefix, func(oi storage.ObjectInfo) error {
		group, _, ok := strings.Cut(strings.TrimPrefix(oi.Name, prefix), "/")
		if !ok || !namePart.MatchString(group) {
			return nil
		}
		if len(out) == 0 || out[len(out)-1] != group {
			out = append(out, group)
		}
		return nil
	})
	return out, err
}
