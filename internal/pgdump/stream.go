package pgdump

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// streamReadAhead is how many runs of blocks may wait, their frames
// fetched or being fetched, for the writer: storage latency is hidden
// while memory stays at a few frames.
const streamReadAhead = 8

// streamCachedFrames is how many recent frames are kept for reuse. A
// nightly dump interleaves blocks stored the night before with new ones,
// two ascending runs through different frames; without this each switch
// would fetch and open a whole frame again for one block.
const streamCachedFrames = 24

// frameFetch is one frame, fetched once, shared by the runs that need it.
type frameFetch struct {
	fl    repo.FrameLoc
	done  chan struct{}
	frame []byte
	err   error
}

// blockRun is consecutive blocks of the file that lie in one frame.
type blockRun struct {
	f     *frameFetch
	parts []blockPart
}

type blockPart struct {
	id  repo.ID
	loc repo.BlobLoc
}

type frameKey struct {
	pack   repo.ID
	offset int64
}

// streamFile writes the content of file node n to w in order, as a
// reader of a pipe needs it (repo.RestoreTree writes blocks in whatever
// order their frames arrive). Frames are fetched ahead by up to workers
// goroutines; every block is checked against its ID before it is written.
func streamFile(ctx context.Context, r *repo.Repository, idx *repo.Index, n *repo.Node, w io.Writer, workers int) error {
	// The repository's keyed block hash is reached through a writer; this
	// one never stores anything.
	hasher := r.NewWriterContext(ctx, nil)
	defer hasher.Abort()
	workers = max(workers, 1)
	g, gctx := errgroup.WithContext(ctx)
	queue := make(chan *blockRun, streamReadAhead)
	var fetches sync.WaitGroup
	defer fetches.Wait()
	g.Go(func() error {
		defer close(queue)
		return planRuns(gctx, r, idx, n, queue, workers, &fetches)
	})
	g.Go(func() error {
		var written int64
		for run := range queue {
			f := run.f
			select {
			case <-f.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if f.err != nil {
				return fmt.Errorf("%s: %w", n.Path, f.err)
			}
			for _, p := range run.parts {
				end := uint64(p.loc.Offset) + uint64(p.loc.Len)
				if end > uint64(len(f.frame)) {
					return fmt.Errorf("%s: block %s lies outside its frame: %w", n.Path, p.id.Short(), repo.ErrCorrupt)
				}
				data := f.frame[p.loc.Offset:end]
				if hasher.BlobID(data) != p.id {
					return fmt.Errorf("%s: block %s does not match its id: %w", n.Path, p.id.Short(), repo.ErrCorrupt)
				}
				if _, err := w.Write(data); err != nil {
					return err
				}
				written += int64(len(data))
			}
		}
		if written != n.Size {
			return fmt.Errorf("%s: %d bytes read, the tree says %d: %w", n.Path, written, n.Size, repo.ErrCorrupt)
		}
		return nil
	})
	return g.Wait()
}

// planRuns groups the blocks of n into runs that lie in one frame, starts
// the fetch of each frame not fetched lately (at most workers at once),
// and queues the runs in file order.
func planRuns(gctx context.Context, r *repo.Repository, idx *repo.Index, n *repo.Node, queue chan<- *blockRun,
	workers int, fetches *sync.WaitGroup) error {
	sem := make(chan struct{}, workers)
	cache := map[frameKey]*frameFetch{}
	var order []frameKey
	frame := func(fl repo.FrameLoc) (*frameFetch, error) {
		key := frameKey{fl.Pack, fl.Offset}
		if f := cache[key]; f != nil {
			// Least recently used goes first.
			i := slices.Index(order, key)
			order = append(slices.Delete(order, i, i+1), key)
			return f, nil
		}
		select {
		case sem <- struct{}{}:
		case <-gctx.Done():
			return nil, gctx.Err()
		}
		f := &frameFetch{fl: fl, done: make(chan struct{})}
		fetches.Add(1)
		go func() {
			defer fetches.Done()
			defer func() { <-sem }()
			f.frame, f.err = r.ReadFrame(gctx, fl)
			close(f.done)
		}()
		cache[key] = f
		if order = append(order, key); len(order) > streamCachedFrames {
			delete(cache, order[0])
			order = order[1:]
		}
		return f, nil
	}
	var cur *blockRun
	send := func() error {
		if cur == nil {
			return nil
		}
		select {
		case queue <- cur:
			cur = nil
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	for _, b := range n.Blocks {
		bl, fl, ok := idx.Lookup(b.ID)
		if !ok {
			return fmt.Errorf("%s: block %s is not in the index: %w", n.Path, b.ID.Short(), repo.ErrMissing)
		}
		if bl.Len != b.Len {
			return fmt.Errorf("%s: block %s is %d bytes, the index says %d: %w", n.Path, b.ID.Short(), b.Len, bl.Len, repo.ErrCorrupt)
		}
		if cur == nil || cur.f.fl.Pack != fl.Pack || cur.f.fl.Offset != fl.Offset {
			if err := send(); err != nil {
				return err
			}
			f, err := frame(fl)
			if err != nil {
				return err
			}
			cur = &blockRun{f: f}
		}
		cur.parts = append(cur.parts, blockPart{id: b.ID, loc: bl})
	}
	return send()
}
