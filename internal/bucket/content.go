package bucket

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// contentSource reads the content of objects out of a repository, in
// order, for the restores that stream it (to a bucket, in a drill, the
// metadata). Frames are shared through a small cache: many small objects
// lie in one frame, and the objects restored at once (one per worker)
// would otherwise each fetch and open it again. Every block is checked
// against its ID before it is handed on; a frame that does not
// authenticate fails the read, naming the pack.
type contentSource struct {
	ctx    context.Context
	r      *repo.Repository
	idx    *repo.Index
	hasher *repo.Writer // for the keyed block hash only; never stores
	sem    chan struct{}
	max    int

	mu    sync.Mutex
	cache map[frameKey]*frameFetch
	order []frameKey // least recently used first
}

type frameKey struct {
	pack   repo.ID
	offset int64
}

// frameFetch is one frame, fetched once for every reader that needs it.
type frameFetch struct {
	done  chan struct{}
	frame []byte
	err   error
}

// readAheadBytes is how far ahead of a reader its frames are fetched.
const readAheadBytes = 4 << 20

func newContentSource(ctx context.Context, r *repo.Repository, idx *repo.Index, workers int) *contentSource {
	workers = max(workers, 1)
	return &contentSource{ctx: ctx, r: r, idx: idx, hasher: r.NewWriterContext(ctx, nil), sem: make(chan struct{}, 2*workers),
		max: 8*workers + 16, cache: map[frameKey]*frameFetch{}}
}

func (c *contentSource) close() { c.hasher.Abort() }

// frame returns the fetch of fl, starting it unless it is cached.
func (c *contentSource) frame(fl repo.FrameLoc) *frameFetch {
	key := frameKey{fl.Pack, fl.Offset}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.cache[key]; f != nil {
		i := slices.Index(c.order, key)
		c.order = append(slices.Delete(c.order, i, i+1), key)
		return f
	}
	f := &frameFetch{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		select {
		case c.sem <- struct{}{}:
		case <-c.ctx.Done():
			f.err = c.ctx.Err()
			return
		}
		defer func() { <-c.sem }()
		f.frame, f.err = c.r.ReadFrame(c.ctx, fl)
	}()
	c.cache[key] = f
	if c.order = append(c.order, key); len(c.order) > c.max {
		delete(c.cache, c.order[0])
		c.order = c.order[1:]
	}
	return f
}

// open reads the content of file node n.
func (c *contentSource) open(ctx context.Context, n *repo.Node) io.Reader {
	name := n.Path
	if k, err := keyOf(n.Path); err == nil {
		name = "object " + quoteKey(k)
	}
	return &blockReader{ctx: ctx, c: c, n: n, name: name}
}

type blockReader struct {
	ctx     context.Context
	c       *contentSource
	n       *repo.Node
	name    string // for messages: the object's key
	i       int    // next block to read
	off     int64  // bytes of the blocks before i
	ahead   int    // next block whose frame is to be asked for
	aheadAt int64  // its offset
	pending []byte // what is left of block i-1
	err     error
}

func (b *blockReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.err != nil {
			return 0, b.err
		}
		if b.i == len(b.n.Blocks) {
			if b.off != b.n.Size {
				b.err = fmt.Errorf("%s: %d bytes read, the tree says %d: %w", b.name, b.off, b.n.Size, repo.ErrCorrupt)
				return 0, b.err
			}
			b.err = io.EOF
			return 0, io.EOF
		}
		if err := b.nextBlock(); err != nil {
			b.err = err
			return 0, err
		}
	}
	k := copy(p, b.pending)
	b.pending = b.pending[k:]
	return k, nil
}

func (b *blockReader) nextBlock() error {
	// Ask for the frames of the next few MiB first, so that they arrive
	// while this one is used.
	if b.ahead < b.i {
		b.ahead, b.aheadAt = b.i, b.off
	}
	for b.ahead < len(b.n.Blocks) && b.aheadAt < b.off+readAheadBytes {
		blk := b.n.Blocks[b.ahead]
		if _, fl, ok := b.c.idx.Lookup(blk.ID); ok {
			b.c.frame(fl)
		}
		b.ahead++
		b.aheadAt += int64(blk.Len)
	}
	blk := b.n.Blocks[b.i]
	bl, fl, ok := b.c.idx.Lookup(blk.ID)
	if !ok {
		return fmt.Errorf("%s: block %s is not in the index: %w", b.name, blk.ID.Short(), repo.ErrMissing)
	}
	if bl.Len != blk.Len {
		return fmt.Errorf("%s: block %s is %d bytes, the index says %d: %w", b.name, blk.ID.Short(), blk.Len, bl.Len, repo.ErrCorrupt)
	}
	f := b.c.frame(fl)
	select {
	case <-f.done:
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	if f.err != nil {
		return fmt.Errorf("%s: %w", b.name, f.err)
	}
	end := uint64(bl.Offset) + uint64(bl.Len)
	if end > uint64(len(f.frame)) {
		return fmt.Errorf("%s: block %s lies outside its frame: %w", b.name, blk.ID.Short(), repo.ErrCorrupt)
	}
	data := f.frame[bl.Offset:end]
	if b.c.hasher.BlobID(data) != blk.ID {
		return fmt.Errorf("%s: block %s does not match its id: %w", b.name, blk.ID.Short(), repo.ErrCorrupt)
	}
	b.pending = data
	b.i++
	b.off += int64(blk.Len)
	return nil
}
