package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// NodeType is the kind of a tree node.
type NodeType uint8

// Node types.
const (
	NodeFile    NodeType = 1
	NodeDir     NodeType = 2
	NodeSymlink NodeType = 3
)

func (t NodeType) String() string {
	switch t {
	case NodeFile:
		return "file"
	case NodeDir:
		return "dir"
	case NodeSymlink:
		return "symlink"
	}
	return fmt.Sprintf("nodetype(%d)", uint8(t))
}

// Block is one piece of a file's content.
type Block struct {
	ID  ID
	Len uint32
}

// Node is one entry of a snapshot's tree: a file, directory or symlink,
// with what is needed to put it back as it was.
type Node struct {
	Path   string // slash-separated, relative, cleaned; "" is never used
	Type   NodeType
	Mode   fs.FileMode // permission and special bits
	UID    uint32
	GID    uint32
	Size   int64
	MTime  int64 // Unix nanoseconds
	Link   string
	Blocks []Block

	list  listRef    // where Blocks came from, for a writer patching it (AddAfter)
	patch *nodePatch // as decoded, until resolved against its base
}

// listRef records which full block list a node read from a tree stands
// on: the tree blob holding it, its length, and the indices the node's
// own list replaces or adds (none for a node stored with a full list).
type listRef struct {
	blob    ID
	baseLen int
	patched []uint32
}

// nodePatch is a block list stored as a patch (FORMAT.md §6): the list of
// the node of the same path in tree blob base, cut or extended to count
// blocks, with the blocks at indices at replaced by blocks.
type nodePatch struct {
	base   ID
	count  int
	at     []uint32
	blocks []Block
}

// nodePatched marks, in the type byte of a node of a compact repository,
// a block list stored as a patch.
const nodePatched = 0x80

// Patches are written for files of at least patchMinBlocks blocks whose
// list differs from its base in at most a quarter of its blocks: a patch
// entry costs a byte more than a list entry, and a reader loads the base
// too, so a list that mostly differs gains little from standing on it.
const patchMinBlocks = 64

// CheckPath refuses paths that could escape a restore target.
func CheckPath(p string) error {
	if p == "" || p == "." || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") ||
		strings.Contains(p, "\x00") {
		return fmt.Errorf("unsafe path %q in tree: %w", p, ErrCorrupt)
	}
	return nil
}

var treeMagic = []byte("LBTR\x01")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendNode encodes n, its block list as patch p when p is not nil.
func appendNode(b []byte, n *Node, p *nodePatch, idLen int) []byte {
	if p != nil {
		b = append(b, byte(n.Type)|nodePatched)
	} else {
		b = append(b, byte(n.Type))
	}
	b = appendString(b, n.Path)
	b = binary.AppendUvarint(b, uint64(n.Mode))
	b = binary.AppendUvarint(b, uint64(n.UID))
	b = binary.AppendUvarint(b, uint64(n.GID))
	b = binary.AppendVarint(b, n.Size)
	b = binary.AppendVarint(b, n.MTime)
	b = appendString(b, n.Link)
	b = binary.AppendUvarint(b, uint64(len(n.Blocks)))
	if p != nil {
		b = append(b, p.base[:idLen]...)
		b = binary.AppendUvarint(b, uint64(len(p.at)))
		next := uint32(0)
		for k, i := range p.at {
			b = binary.AppendUvarint(b, uint64(i-next))
			next = i + 1
			b = append(b, p.blocks[k].ID[:idLen]...)
			b = binary.AppendUvarint(b, uint64(p.blocks[k].Len))
		}
		return b
	}
	for _, bl := range n.Blocks {
		b = append(b, bl.ID[:idLen]...)
		b = binary.AppendUvarint(b, uint64(bl.Len))
	}
	return b
}

func (d *decoder) string() string {
	n := d.uvarint(uint64(len(d.b)))
	return string(d.bytes(int(n)))
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) node() *Node {
	typ := d.byte()
	// Only compact repositories write patches; in the others the bit
	// stays and the type is refused below.
	patched := typ&nodePatched != 0 && d.idLen == compactIDLen
	if patched {
		typ &^= nodePatched
	}
	n := &Node{Type: NodeType(typ)}
	n.Path = d.string()
	n.Mode = fs.FileMode(d.uvarint(1<<32 - 1))
	n.UID = uint32(d.uvarint(1<<32 - 1))
	n.GID = uint32(d.uvarint(1<<32 - 1))
	n.Size = d.varint()
	n.MTime = d.varint()
	n.Link = d.string()
	if patched {
		d.patch(n)
		if d.err != nil {
			return nil
		}
		if n.Type != NodeFile {
			d.err = fmt.Errorf("node %q: a %s with a patched block list", n.Path, n.Type)
		} else if err := CheckPath(n.Path); err != nil {
			d.err = err
		}
		return n
	}
	nb := d.uvarint(uint64(len(d.b) / (d.idLen + 1)))
	if nb > 0 {
		n.Blocks = make([]Block, 0, nb)
	}
	var sum int64
	for i := uint64(0); i < nb && d.err == nil; i++ {
		bl := Block{ID: d.blobID(), Len: uint32(d.uvarint(maxFrameBytes))}
		sum += int64(bl.Len)
		n.Blocks = append(n.Blocks, bl)
	}
	if d.err != nil {
		return nil
	}
	switch {
	case n.Type < NodeFile || n.Type > NodeSymlink:
		d.err = fmt.Errorf("node %q: unknown type %d", n.Path, n.Type)
	case n.Type == NodeFile && sum != n.Size:
		d.err = fmt.Errorf("node %q: blocks hold %d bytes, size is %d", n.Path, sum, n.Size)
	case n.Type != NodeFile && len(n.Blocks) > 0:
		d.err = fmt.Errorf("node %q: a %s with content", n.Path, n.Type)
	}
	if d.err == nil {
		if err := CheckPath(n.Path); err != nil {
			d.err = err
		}
	}
	return n
}

// patch reads a patched block list. Its length is bounded by the largest
// file a tree can describe in 1 GiB blocks, not by the input: a patch
// names only the blocks it replaces.
func (d *decoder) patch(n *Node) {
	p := &nodePatch{count: int(d.uvarint(1 << 31))}
	p.base = d.blobID()
	np := d.uvarint(uint64(len(d.b) / (d.idLen + 2)))
	if d.err == nil && np > uint64(p.count) {
		d.err = fmt.Errorf("node %q: %d patched blocks of %d", n.Path, np, p.count)
	}
	next := uint64(0)
	for k := uint64(0); k < np && d.err == nil; k++ {
		i := next + d.uvarint(uint64(p.count))
		if d.err == nil && i >= uint64(p.count) {
			d.err = fmt.Errorf("node %q: patched block %d of %d", n.Path, i, p.count)
		}
		next = i + 1
		p.at = append(p.at, uint32(i))
		p.blocks = append(p.blocks, Block{ID: d.blobID(), Len: uint32(d.uvarint(maxFrameBytes))})
	}
	n.patch = p
}

// decodeTreeBlob decodes the nodes of one tree blob.
func decodeTreeBlob(b []byte, idLen int) ([]*Node, error) {
	if len(b) < len(treeMagic) || string(b[:len(treeMagic)]) != string(treeMagic) {
		return nil, fmt.Errorf("tree blob: bad magic: %w", ErrCorrupt)
	}
	d := &decoder{b: b[len(treeMagic):], idLen: idLen}
	var nodes []*Node
	for len(d.b) > 0 && d.err == nil {
		n := d.node()
		if d.err == nil {
			nodes = append(nodes, n)
		}
	}
	if d.err != nil {
		return nil, fmt.Errorf("tree blob: %v: %w", d.err, ErrCorrupt)
	}
	return nodes, nil
}

// TreeWriter stores nodes, given in path order, as tree blobs. Blob
// boundaries fall after nodes chosen by a hash of their path, so an
// unchanged stretch of a tree yields the same blobs in every snapshot and
// is stored once.
type TreeWriter struct {
	sink  *Sink
	buf   []byte
	ids   []ID
	last  string
	count int
}

const (
	treeMinBlob = 32 << 10
	treeMaxBlob = 4 << 20
)

// NewTreeWriter returns a writer storing tree blobs through w.
func (w *Writer) NewTreeWriter() *TreeWriter {
	return &TreeWriter{sink: w.NewSink()}
}

// Add appends a node; nodes must come in strictly increasing path order.
func (t *TreeWriter) Add(ctx context.Context, n *Node) error { return t.AddAfter(ctx, n, nil) }

// AddAfter is Add for a file the parent snapshot held as prev (a node read
// from the parent's tree, or nil). In a compact repository a long block
// list that differs from prev's in few blocks is stored as a patch of the
// whole list prev stands on, rather than repeated (FORMAT.md §6): the
// lists of the large files an incremental reads are most of its tree.
func (t *TreeWriter) AddAfter(ctx context.Context, n, prev *Node) error {
	if err := CheckPath(n.Path); err != nil {
		return err
	}
	if t.count > 0 && n.Path <= t.last {
		return fmt.Errorf("tree: node %q after %q: nodes must be sorted", n.Path, t.last)
	}
	if len(t.buf) == 0 {
		t.buf = append(t.buf, treeMagic...)
	}
	idLen := t.sink.w.r.crypt.idLen
	p := patchFor(n, prev, idLen)
	if p != nil {
		atomic.AddInt64(&t.sink.w.stats.ListsPatched, 1)
	}
	t.buf = appendNode(t.buf, n, p, idLen)
	t.last = n.Path
	t.count++
	h := fnv.New32a()
	h.Write([]byte(n.Path))
	if len(t.buf) >= treeMaxBlob || (len(t.buf) >= treeMinBlob && h.Sum32()%16 == 0) {
		return t.cut(ctx)
	}
	return nil
}

func (t *TreeWriter) cut(ctx context.Context) error {
	if len(t.buf) == 0 {
		return nil
	}
	id, _, err := t.sink.Save(ctx, TreeBlob, t.buf)
	if err != nil {
		return err
	}
	t.ids = append(t.ids, id)
	t.buf = t.buf[:0]
	return nil
}

// Close stores the last blob and returns the tree's blob IDs and node
// count. The writer's Finish must still run before a snapshot uses them.
func (t *TreeWriter) Close(ctx context.Context) ([]ID, int, error) {
	if err := t.cut(ctx); err != nil {
		return nil, 0, err
	}
	if err := t.sink.Flush(ctx); err != nil {
		return nil, 0, err
	}
	return t.ids, t.count, nil
}

// treeBlobNodes reads tree blob id and resolves its patched block lists
// against their bases, so that every node it returns has its whole list.
func (r *Repository) treeBlobNodes(ctx context.Context, idx *Index, id ID, bases *baseCache) ([]*Node, error) {
	data, err := r.LoadBlob(ctx, idx, id)
	if err != nil {
		return nil, fmt.Errorf("tree blob %s: %w", id.Short(), err)
	}
	nodes, err := decodeTreeBlob(data, r.crypt.idLen)
	if err != nil {
		return nil, fmt.Errorf("tree blob %s: %w", id.Short(), err)
	}
	for _, n := range nodes {
		if n.patch == nil {
			n.list = listRef{blob: id, baseLen: len(n.Blocks)}
		} else if err := bases.resolve(ctx, r, idx, n); err != nil {
			return nil, fmt.Errorf("tree blob %s: %w", id.Short(), err)
		}
	}
	return nodes, nil
}

// baseCache holds the base tree blob last read: the patched lists of one
// tree blob mostly stand on the same base.
type baseCache struct {
	id    ID
	nodes []*Node
}

// resolve gives the patched node n its whole block list: its base's list
// cut or extended to the patch's length, with the patched blocks in place.
func (c *baseCache) resolve(ctx context.Context, r *Repository, idx *Index, n *Node) error {
	p := n.patch
	if c.nodes == nil || c.id != p.base {
		data, err := r.LoadBlob(ctx, idx, p.base)
		if err != nil {
			return fmt.Errorf("%s: base tree blob %s: %w", n.Path, p.base.Short(), err)
		}
		nodes, err := decodeTreeBlob(data, r.crypt.idLen)
		if err != nil {
			return fmt.Errorf("%s: base tree blob %s: %w", n.Path, p.base.Short(), err)
		}
		c.id, c.nodes = p.base, nodes
	}
	i := sort.Search(len(c.nodes), func(i int) bool { return c.nodes[i].Path >= n.Path })
	if i == len(c.nodes) || c.nodes[i].Path != n.Path || c.nodes[i].Type != NodeFile || c.nodes[i].patch != nil {
		return fmt.Errorf("%s: base tree blob %s holds no whole block list of it: %w", n.Path, p.base.Short(), ErrCorrupt)
	}
	base := c.nodes[i].Blocks
	beyond := 0 // patched blocks past the base's end: all of them must be
	for _, at := range p.at {
		if int(at) >= len(base) {
			beyond++
		}
	}
	if p.count > len(base) && beyond != p.count-len(base) {
		// Checked before the list is made: its length is then bounded by
		// what was read.
		return fmt.Errorf("%s: %d blocks past its base's %d, %d of them given: %w", n.Path, p.count-len(base), len(base), beyond, ErrCorrupt)
	}
	blocks := make([]Block, p.count)
	copy(blocks, base)
	var sum int64
	for k, at := range p.at {
		blocks[at] = p.blocks[k]
	}
	for _, b := range blocks {
		sum += int64(b.Len)
	}
	if sum != n.Size {
		return fmt.Errorf("%s: blocks hold %d bytes, size is %d: %w", n.Path, sum, n.Size, ErrCorrupt)
	}
	n.Blocks, n.list, n.patch = blocks, listRef{blob: p.base, baseLen: len(base), patched: p.at}, nil
	return nil
}

// patchFor returns the patch to store n's block list as, or nil to store
// it whole. A patch stands on the whole list prev's stands on (never on
// another patch, so a reader loads one base), and names every block that
// may differ from that list: those prev's patch named, those beyond the
// base's end, and those that differ from prev's.
func patchFor(n, prev *Node, idLen int) *nodePatch {
	if idLen != compactIDLen || prev == nil || prev.list.blob.IsZero() || n.Type != NodeFile || prev.Type != NodeFile ||
		len(n.Blocks) < patchMinBlocks {
		return nil
	}
	ref := prev.list
	if len(ref.patched) == 0 && slices.Equal(n.Blocks, prev.Blocks) {
		return nil // the same whole list again, stored (and deduplicated) as before
	}
	p := &nodePatch{base: ref.blob, count: len(n.Blocks)}
	q := ref.patched
	for i, b := range n.Blocks {
		named := len(q) > 0 && q[0] == uint32(i)
		if named {
			q = q[1:]
		}
		if named || i >= ref.baseLen || i >= len(prev.Blocks) || b != prev.Blocks[i] {
			p.at = append(p.at, uint32(i))
			p.blocks = append(p.blocks, b)
			if 4*len(p.at) > len(n.Blocks) {
				return nil
			}
		}
	}
	return p
}

// TreeReader yields a tree's nodes in path order, one blob at a time, so a
// tree of any size is read in bounded memory.
type TreeReader struct {
	r     *Repository
	idx   *Index
	ids   []ID
	nodes []*Node
	bases baseCache
	last  string
	err   error
}

// NewTreeReader reads the tree made of blobs ids; idx must know them.
func (r *Repository) NewTreeReader(idx *Index, ids []ID) *TreeReader {
	return &TreeReader{r: r, idx: idx, ids: ids}
}

// Next returns the next node, or nil at the end or on error (see Err).
func (t *TreeReader) Next(ctx context.Context) *Node {
	for len(t.nodes) == 0 {
		if t.err != nil || len(t.ids) == 0 {
			return nil
		}
		t.nodes, t.err = t.r.treeBlobNodes(ctx, t.idx, t.ids[0], &t.bases)
		t.ids = t.ids[1:]
	}
	n := t.nodes[0]
	t.nodes = t.nodes[1:]
	if t.last != "" && n.Path <= t.last {
		t.err = fmt.Errorf("tree: node %q after %q: %w", n.Path, t.last, ErrCorrupt)
		return nil
	}
	t.last = n.Path
	return n
}

// Err returns the error that stopped Next.
func (t *TreeReader) Err() error { return t.err }

// WalkTree calls fn for every node of the tree in path order.
func (r *Repository) WalkTree(ctx context.Context, idx *Index, ids []ID, fn func(*Node) error) error {
	tr := r.NewTreeReader(idx, ids)
	for n := tr.Next(ctx); n != nil; n = tr.Next(ctx) {
		if err := fn(n); err != nil {
			return err
		}
	}
	return tr.Err()
}
