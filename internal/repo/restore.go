package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
)

// RestoreOptions shape RestoreTree.
type RestoreOptions struct {
	// Target maps a tree path to the absolute path it is written to, or
	// to "" to leave the node out (restoring part of a tree); nil writes
	// everything below Dir.
	Target func(treePath string) string
	Dir    string
	// UID and GID, when >= 0, own every restored file instead of the
	// recorded owners.
	UID, GID int
	// Link, when not nil, gives the target a symlink node is restored
	// with (tablespaces restored elsewhere).
	Link func(treePath, recorded string) string
	// Delta keeps existing files and rewrites only the blocks that differ.
	Delta   bool
	Workers int
	// Progress, when not nil, is called with the bytes written so far.
	Progress func(written int64)
}

// RestoreStats counts what a restore did.
type RestoreStats struct {
	Files        int64
	Bytes        int64 // bytes of file content in the snapshot
	BytesWritten int64 // bytes actually written (less with Delta and sparse zeros)
	BytesFetched int64 // bytes read from storage
}

type restoreFile struct {
	node   *Node
	target string
	keep   []bool // Delta: blocks already right on disk
}

type blockTarget struct {
	file   int32
	off    int64
	inner  uint32
	length uint32
	id     ID
}

// RestoreTree writes the tree made of blobs treeIDs to disk. Every blob is
// checked against its ID before it is written; a missing or damaged blob
// fails the restore, naming it.
func (r *Repository) RestoreTree(ctx context.Context, idx *Index, treeIDs []ID, opts RestoreOptions) (RestoreStats, error) {
	var st RestoreStats
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	target := opts.Target
	if target == nil {
		target = func(p string) string { return filepath.Join(opts.Dir, filepath.FromSlash(p)) }
	}
	var files []*restoreFile
	var dirs []*Node
	err := r.WalkTree(ctx, idx, treeIDs, func(n *Node) error {
		dst := target(n.Path)
		if dst == "" {
			return nil
		}
		switch n.Type {
		case NodeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				return fmt.Errorf("create directory: %w", err)
			}
			dirs = append(dirs, n)
		case NodeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				return fmt.Errorf("create directory: %w", err)
			}
			link := n.Link
			if opts.Link != nil {
				link = opts.Link(n.Path, n.Link)
			}
			if cur, err := os.Readlink(dst); err == nil && cur == link {
				break
			}
			if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("replace %s: %w", dst, err)
			}
			if err := os.Symlink(link, dst); err != nil {
				return fmt.Errorf("create symlink: %w", err)
			}
			if err := r.chown(dst, n, opts, true); err != nil {
				return err
			}
		case NodeFile:
			files = append(files, &restoreFile{node: n, target: dst})
			st.Files++
			st.Bytes += n.Size
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	if opts.Delta {
		if err := r.markUnchanged(ctx, files, opts.Workers); err != nil {
			return st, err
		}
	}
	began := time.Now()
	plan, frames, err := r.planRestore(idx, files, opts.Delta)
	if err != nil {
		return st, err
	}
	for _, f := range files {
		if err := createFile(f, opts.Delta); err != nil {
			return st, err
		}
	}
	planned := time.Now()
	fdc := newFDCache(256)
	defer fdc.closeAll()
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan []int)
	g.Go(func() error {
		defer close(work)
		for _, run := range frameRuns(frames) {
			select {
			case work <- run:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for i := 0; i < opts.Workers; i++ {
		g.Go(func() error {
			for run := range work {
				if err := r.restoreRun(gctx, run, frames, plan, files, fdc, &st, opts); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return st, err
	}
	if err := fdc.closeAll(); err != nil {
		return st, err
	}
	written := time.Now()
	r.log.Debug("restore: data written", "files", len(files), "frames", len(frames), "writes", fdc.writes,
		"plan", planned.Sub(began), "write", written.Sub(planned))
	if err := r.finishFiles(ctx, files, opts); err != nil {
		return st, err
	}
	r.log.Debug("restore: files synced", "sync", time.Since(written))
	// Directories last and deepest first: writing into a directory
	// changes its mtime, and a read-only mode would stop later writes.
	sort.Slice(dirs, func(i, j int) bool { return dirs[i].Path > dirs[j].Path })
	for _, d := range dirs {
		dst := target(d.Path)
		if err := syncPath(dst); err != nil {
			return st, err
		}
		if err := r.applyMeta(dst, d, opts); err != nil {
			return st, err
		}
	}
	if opts.Dir != "" {
		if err := syncPath(opts.Dir); err != nil {
			return st, err
		}
	}
	return st, nil
}

// planRestore maps every block to write onto the frame that holds it.
func (r *Repository) planRestore(idx *Index, files []*restoreFile, delta bool) (map[int][]blockTarget, []FrameLoc, error) {
	plan := make(map[int][]blockTarget)
	frameNo := make(map[int32]int)
	var frames []FrameLoc
	zeroIDs := make(map[uint32]ID) // the ID of an all-zero block, per length
	isZero := func(b Block) bool {
		z, ok := zeroIDs[b.Len]
		if !ok {
			z = r.crypt.blobID(make([]byte, b.Len))
			zeroIDs[b.Len] = z
		}
		return z == b.ID
	}
	for fi, f := range files {
		var off int64
		for bi, b := range f.node.Blocks {
			boff := off
			off += int64(b.Len)
			if f.keep != nil && f.keep[bi] {
				continue
			}
			bl, fl, ok := idx.Lookup(b.ID)
			if !ok {
				return nil, nil, fmt.Errorf("%s: block %d (blob %s) is not in the repository: %w", f.node.Path, bi, b.ID.Short(), ErrMissing)
			}
			if !delta && isZero(b) {
				continue // sparse restore: a new file reads as zeros already
			}
			n, ok := frameNo[bl.Frame]
			if !ok {
				n = len(frames)
				frameNo[bl.Frame] = n
				frames = append(frames, fl)
			}
			plan[n] = append(plan[n], blockTarget{file: int32(fi), off: boff, inner: bl.Offset, length: bl.Len, id: b.ID})
		}
	}
	return plan, frames, nil
}

// frameRuns groups frames into runs read with one range request: frames of
// one pack that lie close together.
func frameRuns(frames []FrameLoc) [][]int {
	order := make([]int, len(frames))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		fa, fb := frames[order[a]], frames[order[b]]
		if fa.Pack != fb.Pack {
			return bytes.Compare(fa.Pack[:], fb.Pack[:]) < 0
		}
		return fa.Offset < fb.Offset
	})
	const maxGap, maxRun = 1 << 20, 16 << 20
	var runs [][]int
	var cur []int
	for _, i := range order {
		if len(cur) > 0 {
			first, last := frames[cur[0]], frames[cur[len(cur)-1]]
			f := frames[i]
			if f.Pack != last.Pack || f.Offset-(last.Offset+int64(last.Sealed)) > maxGap ||
				f.Offset+int64(f.Sealed)-first.Offset > maxRun {
				runs = append(runs, cur)
				cur = nil
			}
		}
		cur = append(cur, i)
	}
	if len(cur) > 0 {
		runs = append(runs, cur)
	}
	return runs
}

func (r *Repository) restoreRun(ctx context.Context, run []int, frames []FrameLoc, plan map[int][]blockTarget,
	files []*restoreFile, fdc *fdCache, st *RestoreStats, opts RestoreOptions) error {
	first, last := frames[run[0]], frames[run[len(run)-1]]
	start := first.Offset
	length := last.Offset + int64(last.Sealed) - start
	bp := runBuffers.Get().(*[]byte)
	defer runBuffers.Put(bp)
	if int64(cap(*bp)) < length {
		*bp = make([]byte, length)
	}
	buf := (*bp)[:length]
	if err := r.readRange(ctx, first.Pack, start, buf); err != nil {
		return err
	}
	atomic.AddInt64(&st.BytesFetched, length)
	fp := frameBuffers.Get().(*[]byte)
	defer frameBuffers.Put(fp)
	reread := false
	for k := 0; k < len(run); k++ {
		fl := frames[run[k]]
		frame, err := r.openFrameInto(*fp, buf[fl.Offset-start:fl.Offset-start+int64(fl.Sealed)], fl)
		if err == nil {
			err = r.checkFrameBlobs(frame, fl, plan[run[k]])
		}
		if damaged(err) && !reread {
			// Frames are opened in place, so the rest of the run is read
			// again from this frame on; what was written stays.
			reread = true
			r.damagedInTransit(packName(fl.Pack), err)
			if err := r.readRange(ctx, fl.Pack, fl.Offset, buf[fl.Offset-start:]); err != nil {
				return err
			}
			atomic.AddInt64(&st.BytesFetched, length-(fl.Offset-start))
			k--
			continue
		}
		if err != nil {
			return err
		}
		if fl.Flags&frameFlagZstd != 0 && cap(frame) > cap(*fp) {
			*fp = frame[:0] // grown by the decoder; raw frames live in buf
		}
		targets := plan[run[k]]
		// Blocks stored side by side and written side by side (the usual
		// case: a file read in order) go out in one write.
		for i := 0; i < len(targets); {
			t := targets[i]
			j, end := i+1, t.inner+t.length
			for j < len(targets) && targets[j].file == t.file && targets[j].inner == end &&
				targets[j].off == t.off+int64(end-t.inner) {
				end += targets[j].length
				j++
			}
			if err := fdc.writeAt(files[t.file].target, int(t.file), frame[t.inner:end], t.off); err != nil {
				return err
			}
			w := atomic.AddInt64(&st.BytesWritten, int64(end-t.inner))
			if opts.Progress != nil {
				opts.Progress(w)
			}
			i = j
		}
	}
	return ctx.Err()
}

// checkFrameBlobs checks that every block a frame is to give holds what
// its id says, before any of it is written.
func (r *Repository) checkFrameBlobs(frame []byte, fl FrameLoc, targets []blockTarget) error {
	checked := make(map[ID]bool)
	for _, t := range targets {
		if uint64(t.inner)+uint64(t.length) > uint64(len(frame)) {
			return fmt.Errorf("blob %s: outside its frame: %w", t.id.Short(), ErrCorrupt)
		}
		if !checked[t.id] {
			if err := r.checkBlob(t.id, frame[t.inner:t.inner+t.length]); err != nil {
				return fmt.Errorf("pack %s: %w", fl.Pack.Short(), err)
			}
			checked[t.id] = true
		}
	}
	return nil
}

// runBuffers recycles the buffers pack ranges are read into; allocating
// 16 MiB afresh for every range costs more than the copy.
var runBuffers = sync.Pool{New: func() any { b := make([]byte, 0); return &b }}

// frameBuffers recycles the buffers frames are decompressed into.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0); return &b }}

func createFile(f *restoreFile, delta bool) error {
	if err := os.MkdirAll(filepath.Dir(f.target), 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE
	if !delta {
		flags |= os.O_TRUNC
	}
	if fi, err := os.Lstat(f.target); err == nil && !fi.Mode().IsRegular() {
		if err := os.RemoveAll(f.target); err != nil {
			return fmt.Errorf("replace %s: %w", f.target, err)
		}
	}
	fh, err := os.OpenFile(f.target, flags, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	err = fh.Truncate(f.node.Size)
	if err == nil && !delta && f.node.Size > 0 {
		// Reserve the file's blocks in one piece: blocks arrive out of
		// order (an incremental's pages land in the holes of its parent's
		// frames), and allocating them as they are written back fragments
		// the file and slows the disk. Without support it just stays sparse.
		_ = syscall.Fallocate(int(fh.Fd()), 0, 0, f.node.Size)
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size %s: %w", f.target, err)
	}
	return nil
}

// markUnchanged hashes the blocks of files already on disk, so Delta
// rewrites only the blocks that differ.
func (r *Repository) markUnchanged(ctx context.Context, files []*restoreFile, workers int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, f := range files {
		g.Go(func() error {
			fh, err := os.Open(f.target)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("delta: %w", err)
			}
			defer fh.Close()
			f.keep = make([]bool, len(f.node.Blocks))
			var off int64
			buf := make([]byte, 0, 64<<10)
			for i, b := range f.node.Blocks {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				buf = buf[:b.Len]
				n, err := fh.ReadAt(buf, off)
				off += int64(b.Len)
				if n < len(buf) {
					if err == io.EOF {
						break
					}
					return fmt.Errorf("delta: read %s: %w", f.target, err)
				}
				f.keep[i] = r.crypt.blobID(buf) == b.ID
			}
			return nil
		})
	}
	return g.Wait()
}

func (r *Repository) finishFiles(ctx context.Context, files []*restoreFile, opts RestoreOptions) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(opts.Workers * 4)
	for _, f := range files {
		g.Go(func() error {
			if err := syncPath(f.target); err != nil {
				return err
			}
			return r.applyMeta(f.target, f.node, opts)
		})
	}
	return g.Wait()
}

func (r *Repository) chown(path string, n *Node, opts RestoreOptions, link bool) error {
	uid, gid := int(n.UID), int(n.GID)
	if opts.UID >= 0 {
		uid = opts.UID
	}
	if opts.GID >= 0 {
		gid = opts.GID
	}
	if uid == os.Geteuid() && gid == os.Getegid() {
		return nil
	}
	var err error
	if link {
		err = os.Lchown(path, uid, gid)
	} else {
		err = os.Chown(path, uid, gid)
	}
	if err != nil && os.Geteuid() == 0 {
		return fmt.Errorf("set owner of %s: %w", path, err)
	}
	// Without root a restore cannot give files away; they stay the
	// restoring user's, which is what PostgreSQL run by that user needs.
	return nil
}

func (r *Repository) applyMeta(path string, n *Node, opts RestoreOptions) error {
	if err := r.chown(path, n, opts, false); err != nil {
		return err
	}
	if err := os.Chmod(path, n.Mode.Perm()|n.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("set mode of %s: %w", path, err)
	}
	mt := time.Unix(0, n.MTime)
	if err := os.Chtimes(path, mt, mt); err != nil {
		return fmt.Errorf("set times of %s: %w", path, err)
	}
	return nil
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// fdCache keeps a bounded number of files open for writing.
type fdCache struct {
	mu     sync.Mutex
	max    int
	open   map[int]*cachedFD
	clock  int64
	writes int64
}

type cachedFD struct {
	f    *os.File
	refs int
	used int64
}

func newFDCache(max int) *fdCache { return &fdCache{max: max, open: make(map[int]*cachedFD)} }

func (c *fdCache) writeAt(path string, key int, data []byte, off int64) error {
	c.mu.Lock()
	e, ok := c.open[key]
	if !ok {
		if len(c.open) >= c.max {
			c.evictLocked()
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("open %s: %w", path, err)
		}
		e = &cachedFD{f: f}
		c.open[key] = e
	}
	e.refs++
	c.clock++
	c.writes++
	e.used = c.clock
	c.mu.Unlock()
	_, err := e.f.WriteAt(data, off)
	c.mu.Lock()
	e.refs--
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// evictLocked closes the least recently used idle file. Files are synced
// later by path, so closing early loses nothing.
func (c *fdCache) evictLocked() {
	var victim int
	var best *cachedFD
	for k, e := range c.open {
		if e.refs == 0 && (best == nil || e.used < best.used) {
			victim, best = k, e
		}
	}
	if best != nil {
		best.f.Close()
		delete(c.open, victim)
	}
}

func (c *fdCache) closeAll() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for k, e := range c.open {
		if err := e.f.Close(); err != nil && first == nil {
			first = err
		}
		delete(c.open, k)
	}
	return first
}
