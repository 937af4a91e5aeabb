package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"strings"
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
}

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

func appendNode(b []byte, n *Node, idLen int) []byte {
	b = append(b, byte(n.Type))
	b = appendString(b, n.Path)
	b = binary.AppendUvarint(b, uint64(n.Mode))
	b = binary.AppendUvarint(b, uint64(n.UID))
	b = binary.AppendUvarint(b, uint64(n.GID))
	b = binary.AppendVarint(b, n.Size)
	b = binary.AppendVarint(b, n.MTime)
	b = appendString(b, n.Link)
	b = binary.AppendUvarint(b, uint64(len(n.Blocks)))
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
	n := &Node{Type: NodeType(d.byte())}
	n.Path = d.string()
	n.Mode = fs.FileMode(d.uvarint(1<<32 - 1))
	n.UID = uint32(d.uvarint(1<<32 - 1))
	n.GID = uint32(d.uvarint(1<<32 - 1))
	n.Size = d.varint()
	n.MTime = d.varint()
	n.Link = d.string()
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
func (t *TreeWriter) Add(ctx context.Context, n *Node) error {
	if err := CheckPath(n.Path); err != nil {
		return err
	}
	if t.count > 0 && n.Path <= t.last {
		return fmt.Errorf("tree: node %q after %q: nodes must be sorted", n.Path, t.last)
	}
	if len(t.buf) == 0 {
		t.buf = append(t.buf, treeMagic...)
	}
	t.buf = appendNode(t.buf, n, t.sink.w.r.crypt.idLen)
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

// TreeReader yields a tree's nodes in path order, one blob at a time, so a
// tree of any size is read in bounded memory.
type TreeReader struct {
	r     *Repository
	idx   *Index
	ids   []ID
	nodes []*Node
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
		data, err := t.r.LoadBlob(ctx, t.idx, t.ids[0])
		if err != nil {
			t.err = fmt.Errorf("tree blob %s: %w", t.ids[0].Short(), err)
			return nil
		}
		t.ids = t.ids[1:]
		t.nodes, t.err = decodeTreeBlob(data, t.r.crypt.idLen)
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
