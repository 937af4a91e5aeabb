package bucket

import (
	"context"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// The statuses of a change.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// DiffResult is what changed from one snapshot of a bucket asset to a
// later one, in key order.
type DiffResult struct {
	Asset   string    `json:"asset"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Changes []*Change `json:"changes"`
	Added   int       `json:"added"`
	Removed int       `json:"removed"`
	Changed int       `json:"changed"`
}

// Change is one key that differs. An object written again with the same
// content, headers and tags is not a change (its time and ETag may be new).
type Change struct {
	Key       string `json:"key"`
	KeyBase64 string `json:"key_base64,omitempty"` // when the key is not UTF-8
	Status    string `json:"status"`
	// What changed, for a changed key: some of "content", "metadata"
	// (headers or user metadata), "tags".
	What []string `json:"what,omitempty"`
	Old  *Version `json:"old,omitempty"`
	New  *Version `json:"new,omitempty"`
}

// Version is one side of a change.
type Version struct {
	Size         int64     `json:"size"`
	ETag         string    `json:"etag"`
	SHA256       string    `json:"sha256"`
	LastModified time.Time `json:"last_modified"`
	ContentType  string    `json:"content_type,omitempty"`
}

func versionOf(o *Object) *Version {
	return &Version{Size: o.Size, ETag: o.ETag, SHA256: o.SHA256, LastModified: o.LastModified, ContentType: o.ContentType}
}

// Diff compares snapshot from with the later snapshot to of the same
// bucket asset. Both are read side by side in key order: memory grows with
// the changes, not with the bucket.
func (kind) Diff(ctx context.Context, r *repo.Repository, from, to *repo.Snapshot) (asset.DiffResult, error) {
	return diff(ctx, r, from, to)
}

func diff(ctx context.Context, r *repo.Repository, from, to *repo.Snapshot) (*DiffResult, error) {
	if from.Asset != to.Asset {
		return nil, asset.Usagef("snapshot %s is of asset %s and %s of asset %s: diff compares two snapshots of one asset",
			from.ID.Short(), from.Asset, to.ID.Short(), to.Asset)
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	src := newContentSource(ctx, r, idx, 2)
	defer src.close()
	ra, err := openSnapshot(ctx, r, idx, from, src)
	if err != nil {
		return nil, err
	}
	rb, err := openSnapshot(ctx, r, idx, to, src)
	if err != nil {
		return nil, err
	}
	res := &DiffResult{Asset: from.Asset, From: from.ID.String(), To: to.ID.String(), Changes: []*Change{}}
	a, err := ra.next(ctx)
	if err != nil {
		return nil, err
	}
	b, err := rb.next(ctx)
	if err != nil {
		return nil, err
	}
	for a != nil || b != nil {
		switch {
		case b == nil || (a != nil && a.key < b.key):
			res.add(a.key, &Change{Status: Removed, Old: versionOf(a.obj)})
			res.Removed++
			if a, err = ra.next(ctx); err != nil {
				return nil, err
			}
		case a == nil || b.key < a.key:
			res.add(b.key, &Change{Status: Added, New: versionOf(b.obj)})
			res.Added++
			if b, err = rb.next(ctx); err != nil {
				return nil, err
			}
		default:
			var what []string
			if a.obj.Size != b.obj.Size || a.obj.SHA256 != b.obj.SHA256 {
				what = append(what, "content")
			}
			if !sameMeta(a.obj, b.obj) {
				what = append(what, "metadata")
			}
			if !maps.Equal(a.obj.Tags, b.obj.Tags) {
				what = append(what, "tags")
			}
			if len(what) > 0 {
				res.add(a.key, &Change{Status: Changed, What: what, Old: versionOf(a.obj), New: versionOf(b.obj)})
				res.Changed++
			}
			if a, err = ra.next(ctx); err != nil {
				return nil, err
			}
			if b, err = rb.next(ctx); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func (res *DiffResult) add(key string, c *Change) {
	var o Object
	o.setKey(key)
	c.Key, c.KeyBase64 = o.Key, o.KeyBase64
	res.Changes = append(res.Changes, c)
}

// WriteText writes the changes, one key a line: + added, - removed,
// M changed (with what changed), then the counts.
func (res *DiffResult) WriteText(w io.Writer, from, to *repo.Snapshot) {
	fmt.Fprintf(w, "asset %s: snapshot %s (%s) -> %s (%s)\n", res.Asset, from.ID.Short(), lifeboat.FormatTime(from.EndTime),
		to.ID.Short(), lifeboat.FormatTime(to.EndTime))
	for _, c := range res.Changes {
		key := c.Key
		if c.KeyBase64 != "" {
			o := Object{KeyBase64: c.KeyBase64}
			key, _ = o.key()
		}
		switch c.Status {
		case Added:
			fmt.Fprintf(w, "+ %s (%s)\n", quoteKey(key), asset.HumanBytes(c.New.Size))
		case Removed:
			fmt.Fprintf(w, "- %s\n", quoteKey(key))
		default:
			var details []string
			for _, what := range c.What {
				if what == "content" {
					details = append(details, fmt.Sprintf("content, %s -> %s", asset.HumanBytes(c.Old.Size), asset.HumanBytes(c.New.Size)))
				} else {
					details = append(details, what)
				}
			}
			fmt.Fprintf(w, "M %s (%s)\n", quoteKey(key), strings.Join(details, "; "))
		}
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed\n", res.Added, res.Removed, res.Changed)
}
