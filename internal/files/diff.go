package files

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// DefaultMaxTextSize is the largest file Diff shows as a line diff.
const DefaultMaxTextSize = 256 << 10

// DiffOptions shape Diff.
type DiffOptions struct {
	// MaxTextSize is the largest file (on either side) shown as a line
	// diff; 0 means DefaultMaxTextSize, negative shows none.
	MaxTextSize int64
}

// Entry is one side of a change: a node as a snapshot records it.
type Entry struct {
	Type  string    `json:"type"`
	Mode  string    `json:"mode"` // octal, as chmod takes it: 0644, 4755
	UID   uint32    `json:"uid"`
	GID   uint32    `json:"gid"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
	Link  string    `json:"link,omitempty"`
}

// The statuses of a change.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Change is one path that differs between two snapshots. A change in
// modification time alone is not one: it says nothing about the content.
type Change struct {
	Path   string `json:"path"` // absolute, as backed up
	Status string `json:"status"`
	// What changed, for a changed path: some of "type", "content",
	// "mode", "owner", "link".
	What []string `json:"what,omitempty"`
	Old  *Entry   `json:"old,omitempty"`
	New  *Entry   `json:"new,omitempty"`
	// Diff is the unified line diff of a text file's content; NoDiff says
	// why a file whose content changed (or was added or removed) has
	// none: "binary" or "larger than N bytes".
	Diff   string `json:"diff,omitempty"`
	NoDiff string `json:"no_diff,omitempty"`

	oldNode, newNode *repo.Node
}

// DiffResult is what changed from one snapshot of a files asset to
// another, in path order.
type DiffResult struct {
	Asset string `json:"asset"`
	From  string `json:"from"`
	To    string `json:"to"`
	// FromInfo and ToInfo are what each snapshot records of its backup:
	// roots, patterns, and what it skipped or could not read cleanly.
	FromInfo *Info     `json:"from_info"`
	ToInfo   *Info     `json:"to_info"`
	Changes  []*Change `json:"changes"`
	Added    int       `json:"added"`
	Removed  int       `json:"removed"`
	Changed  int       `json:"changed"`
}

// Diff compares snapshot a with the later snapshot b of the same files
// asset. Both trees are read side by side in path order, so memory grows
// with the changes, not with the trees.
func Diff(ctx context.Context, r *repo.Repository, a, b *repo.Snapshot, opts DiffOptions) (*DiffResult, error) {
	infoA, err := SnapshotInfo(a)
	if err != nil {
		return nil, err
	}
	infoB, err := SnapshotInfo(b)
	if err != nil {
		return nil, err
	}
	if a.Asset != b.Asset {
		return nil, fmt.Errorf("snapshot %s is of asset %s and %s of asset %s: diff compares two snapshots of one asset",
			a.ID.Short(), a.Asset, b.ID.Short(), b.Asset)
	}
	if opts.MaxTextSize == 0 {
		opts.MaxTextSize = DefaultMaxTextSize
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	res := &DiffResult{Asset: a.Asset, From: a.ID.String(), To: b.ID.String(), FromInfo: infoA, ToInfo: infoB, Changes: []*Change{}}
	ta, tb := r.NewTreeReader(idx, a.Tree), r.NewTreeReader(idx, b.Tree)
	na, nb := ta.Next(ctx), tb.Next(ctx)
	for na != nil || nb != nil {
		switch {
		case nb == nil || (na != nil && na.Path < nb.Path):
			res.Changes = append(res.Changes, &Change{Path: "/" + na.Path, Status: Removed, Old: entryOf(na), oldNode: na})
			res.Removed++
			na = ta.Next(ctx)
		case na == nil || nb.Path < na.Path:
			res.Changes = append(res.Changes, &Change{Path: "/" + nb.Path, Status: Added, New: entryOf(nb), newNode: nb})
			res.Added++
			nb = tb.Next(ctx)
		default:
			if what := compareNodes(na, nb); len(what) > 0 {
				res.Changes = append(res.Changes, &Change{Path: "/" + na.Path, Status: Changed, What: what,
					Old: entryOf(na), New: entryOf(nb), oldNode: na, newNode: nb})
				res.Changed++
			}
			na, nb = ta.Next(ctx), tb.Next(ctx)
		}
	}
	if err := ta.Err(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", a.ID.Short(), err)
	}
	if err := tb.Err(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", b.ID.Short(), err)
	}
	if opts.MaxTextSize > 0 {
		for _, c := range res.Changes {
			if err := lineDiffOf(ctx, r, idx, c, opts.MaxTextSize); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// compareNodes lists what differs between two nodes of one path.
func compareNodes(a, b *repo.Node) []string {
	var what []string
	if a.Type != b.Type {
		return []string{"type"}
	}
	if a.Type == repo.NodeFile && (a.Size != b.Size || !slices.Equal(a.Blocks, b.Blocks)) {
		what = append(what, "content")
	}
	if a.Mode != b.Mode {
		what = append(what, "mode")
	}
	if a.UID != b.UID || a.GID != b.GID {
		what = append(what, "owner")
	}
	if a.Link != b.Link {
		what = append(what, "link")
	}
	return what
}

// lineDiffOf fills in the line diff of a file whose content changed, was
// added or was removed, when both sides are text and small enough.
func lineDiffOf(ctx context.Context, r *repo.Repository, idx *repo.Index, c *Change, limit int64) error {
	isFile := func(n *repo.Node) bool { return n == nil || n.Type == repo.NodeFile }
	if !isFile(c.oldNode) || !isFile(c.newNode) || (c.Status == Changed && !slices.Contains(c.What, "content")) {
		return nil
	}
	var texts [2][]byte
	for i, n := range []*repo.Node{c.oldNode, c.newNode} {
		if n == nil {
			continue
		}
		if n.Size > limit {
			c.NoDiff = fmt.Sprintf("larger than %d bytes", limit)
			return nil
		}
		data, err := readContent(ctx, r, idx, n)
		if err != nil {
			return err
		}
		if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
			c.NoDiff = "binary"
			return nil
		}
		texts[i] = data
	}
	nameA, nameB := "a"+c.Path, "b"+c.Path
	if c.oldNode == nil {
		nameA = "/dev/null"
	}
	if c.newNode == nil {
		nameB = "/dev/null"
	}
	c.Diff = unified(nameA, nameB, string(texts[0]), string(texts[1]))
	return nil
}

// readContent loads a (small) file's content from the repository.
func readContent(ctx context.Context, r *repo.Repository, idx *repo.Index, n *repo.Node) ([]byte, error) {
	buf := make([]byte, 0, n.Size)
	for _, bl := range n.Blocks {
		data, err := r.LoadBlob(ctx, idx, bl.ID)
		if err != nil {
			return nil, fmt.Errorf("/%s: %w", n.Path, err)
		}
		buf = append(buf, data...)
	}
	return buf, nil
}

func entryOf(n *repo.Node) *Entry {
	return &Entry{Type: n.Type.String(), Mode: ModeString(n.Mode), UID: n.UID, GID: n.GID, Size: n.Size,
		MTime: time.Unix(0, n.MTime).UTC(), Link: n.Link}
}

// ModeString writes a node's mode in octal as chmod takes it, with the
// setuid (4000), setgid (2000) and sticky (1000) bits.
func ModeString(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return fmt.Sprintf("%04o", v)
}
