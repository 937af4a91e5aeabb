package evidence

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Area is where drill reports live in a repository: drills/<asset>/<id>.
const Area = "drills"

// Store keeps the report in the repository the drill restored from, so
// that the repository, and every copy of it, carries its own evidence.
func Store(ctx context.Context, r *repo.Repository, rep *DrillReport) error {
	doc, err := rep.Marshal()
	if err != nil {
		return err
	}
	if _, err := r.PutNamed(ctx, Area, rep.Asset, rep.ID, doc, repo.CodecZstd); err != nil {
		return fmt.Errorf("store drill report %s in %s: %w", rep.ID, r.Location(), err)
	}
	return nil
}

// Stored lists the drill reports a repository holds for an asset, oldest
// first.
func Stored(ctx context.Context, r *repo.Repository, asset string) ([]*DrillReport, error) {
	return stored(ctx, r, asset, "drill report", Unmarshal)
}

// stored reads every document of drills/<name>/ with unmarshal, oldest
// first; one planted without the key is left out (the repository noted
// it), and what is named in errors is what.
func stored[T any](ctx context.Context, r *repo.Repository, name, what string, unmarshal func([]byte) (T, error)) ([]T, error) {
	var ids []string
	if err := r.ListNamed(ctx, Area, name, "", func(rel string, _ int64) error {
		ids = append(ids, rel)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list %ss of %s: %w", what, name, err)
	}
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		data, err := r.GetNamed(ctx, Area, name, id)
		if errors.Is(err, repo.ErrUnauthentic) {
			continue // planted without the key: the repository noted it
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, id, err)
		}
		doc, err := unmarshal(data)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", what, id, err)
		}
		out = append(out, doc)
	}
	return out, nil
}
