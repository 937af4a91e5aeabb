package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// RestoreOptions shape RestoreTree.
type RestoreOptions struct {
	// Dir is the directory the tree is written below: nothing is written
	// outside it, or outside a directory of Mounts. It is opened with
	// OpenRestoreDir (made when missing) unless Root is given.
	Dir string
	// Root, when not nil, is Dir already opened; RestoreTree leaves it
	// open for the caller.
	Root *RestoreDir
	// Target maps a tree path to the absolute path it is written to,
	// which must lie below Dir, or to "" to leave the node out (restoring
	// part of a tree); nil writes everything at its tree path below Dir.
	// Nodes at or below a path of Mounts are placed by Mounts instead.
	Target func(treePath string) string
	// UID and GID, when >= 0, own every restored file instead of the
	// recorded owners.
	UID, GID int
	// Mounts maps tree paths to directories of their own. A symlink node
	// at such a path is restored as a link to the directory (a
	// tablespace), a directory node as the directory itself, and the
	// nodes below it are written below the directory. These are the only
	// links a restore writes through: a node below any other symlink of
	// the tree is refused as corrupt before anything is written.
	Mounts map[string]*RestoreDir
	// Zero, when not nil, names files restored at their size but reading
	// as zeros (sparse), their content not read: the relations of the
	// databases a PostgreSQL restore leaves out, which recovery still
	// finds where the WAL expects them. Not with Delta.
	Zero func(treePath string) bool
	// Delta keeps existing files and rewrites only the blocks that differ.
	Delta bool
	// Record leaves RestoreRecordName at the top of Root, and with Delta
	// reads the one a restore before left there: a file untouched since
	// is then compared with the snapshot by its block list, not read.
	Record  bool
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
	// BytesCompared is what Delta read of the files on disk to find the
	// blocks that differ; files the restore record vouches for are not read.
	BytesCompared int64
}

// placed is where a node goes: a name below one of the restore's
// directories, and the inode the restore made or checked there.
type placed struct {
	node *Node
	dir  *RestoreDir
	rel  string // slash-separated, below dir; "." is dir itself
	id   fileID
	// final is the file's state once the restore finished with it.
	final *unix.Stat_t
}

func (p *placed) name() string { return p.dir.join(p.rel) }

type restoreFile struct {
	placed
	keep []bool // Delta: blocks already right on disk
	// settled: Delta found the file as the last restore recorded it,
	// with this snapshot's content, owner, mode and time; not touched.
	settled bool
}

// blockTarget is where one block goes. The block's ID is found through
// file and block (files[file].node.Blocks[block]) rather than held: a
// restore plans one target per block, millions for a large cluster.
type blockTarget struct {
	file   int32
	block  int32
	off    int64
	inner  uint32
	length uint32
}

// RestoreTree writes the tree made of blobs treeIDs to disk. Every blob is
// checked against its ID before it is written; a missing or damaged blob
// fails the restore, naming it.
//
// Every write goes through a RestoreDir: names are resolved beneath the
// restore's directory without following any symlink, files are made
// afresh (O_EXCL) unless Delta finds one it may reuse, and owners, modes
// and times are set on descriptors whose inode is checked against the one
// the restore made. A link another user plants or swaps in while the
// restore runs fails the restore; it never redirects a write.
func (r *Repository) RestoreTree(ctx context.Context, idx *Index, treeIDs []ID, opts RestoreOptions) (st RestoreStats, err error) {
	tr, err := r.PrepareRestore(ctx, idx, treeIDs, opts)
	if err != nil {
		return st, err
	}
	defer func() {
		if cerr := tr.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if err := tr.Layout(ctx); err != nil {
		return st, err
	}
	return tr.Write(ctx, idx)
}

// TreeRestore is RestoreTree in steps, for a caller that needs the
// tree's paths before anything is written (PrepareRestore), or the blobs
// still to fetch once the files on disk are compared (Layout, Needed), to
// read only those from the index before Write.
type TreeRestore struct {
	rs      *treeRestore
	idx     *Index // the trees, and the trees a restore record names
	treeIDs []ID
	ownRoot bool
	st      RestoreStats
}

// PrepareRestore reads the tree and places every node; nothing is
// written yet. idx needs to hold only tree blobs.
func (r *Repository) PrepareRestore(ctx context.Context, idx *Index, treeIDs []ID, opts RestoreOptions) (*TreeRestore, error) {
	// Refused before the target is touched.
	if err := r.CanReadContents(ctx); err != nil {
		return nil, err
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	tr := &TreeRestore{idx: idx, treeIDs: treeIDs}
	root := opts.Root
	if root == nil {
		if opts.Dir == "" {
			return nil, errors.New("restore: no directory to restore below")
		}
		var err error
		if root, err = OpenRestoreDir(opts.Dir, DirOptions{Create: true}); err != nil {
			return nil, fmt.Errorf("restore target: %w", err)
		}
		tr.ownRoot = true
	}
	tr.rs = &treeRestore{r: r, opts: opts, root: root}
	if err := tr.rs.collect(ctx, idx, treeIDs); err != nil {
		tr.Close()
		return nil, err
	}
	tr.st.Files = int64(len(tr.rs.files))
	for _, f := range tr.rs.files {
		tr.st.Bytes += f.node.Size
	}
	return tr, nil
}

// Paths are the tree paths of every node the restore writes.
func (tr *TreeRestore) Paths() map[string]bool {
	out := make(map[string]bool, len(tr.rs.dirs)+len(tr.rs.links)+len(tr.rs.files))
	for _, p := range append(tr.rs.dirs, tr.rs.links...) {
		out[p.node.Path] = true
	}
	for _, f := range tr.rs.files {
		out[f.node.Path] = true
	}
	return out
}

// Layout makes the directories and links, and with Delta finds the blocks
// the files on disk already hold.
func (tr *TreeRestore) Layout(ctx context.Context) error {
	rs := tr.rs
	for _, d := range rs.dirs {
		if err := rs.makeDir(d); err != nil {
			return err
		}
	}
	for _, l := range rs.links {
		if err := rs.makeLink(l); err != nil {
			return err
		}
	}
	if rs.opts.Delta {
		if err := rs.markUnchanged(ctx, tr.idx, rs.opts.Workers); err != nil {
			return err
		}
		tr.st.BytesCompared = rs.compared.Load()
	}
	return nil
}

// Needed says which blobs Write will read, once Layout has run. It is a
// filter: true for every blob Write reads, and for the few others that
// share the first 8 bytes of an ID with one (selecting those from the
// index costs an entry each). Keying by 8 bytes keeps it at about a
// third of the memory of a set of IDs: millions of blocks for a large
// cluster, held while the index is selected.
func (tr *TreeRestore) Needed() func(ID) bool {
	set := make(map[uint64]struct{})
	for _, f := range tr.rs.files {
		if f.settled || tr.rs.zero(f.node.Path) {
			continue
		}
		for i, b := range f.node.Blocks {
			if f.keep == nil || !f.keep[i] {
				set[binary.LittleEndian.Uint64(b.ID[:8])] = struct{}{}
			}
		}
	}
	return func(id ID) bool {
		_, ok := set[binary.LittleEndian.Uint64(id[:8])]
		return ok
	}
}

// Close releases the restore's directory when PrepareRestore opened it.
func (tr *TreeRestore) Close() error {
	if !tr.ownRoot {
		return nil
	}
	tr.ownRoot = false
	return tr.rs.root.Close()
}

// Write writes the files, reading their blobs through idx, syncs them and
// gives everything its owner, mode and times.
func (tr *TreeRestore) Write(ctx context.Context, idx *Index) (st RestoreStats, err error) {
	r, rs, opts, treeIDs := tr.rs.r, tr.rs, tr.rs.opts, tr.treeIDs
	st = tr.st
	files := rs.files
	for _, f := range files {
		if f.settled {
			continue
		}
		if err := rs.createFile(f); err != nil {
			return st, err
		}
	}
	began := time.Now()
	plan, frames, err := r.planRestore(idx, files, opts.Delta, rs.zero)
	if err != nil {
		return st, err
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
				err := r.restoreRun(gctx, run, frames, plan, files, fdc, &st, opts)
				// A run reads one pack; one overwritten in place is read
				// again from its authentic version (versions.go), and
				// writing the run again writes the same bytes.
				if err != nil && r.recoverPack(gctx, frames[run[0]].Pack, err) {
					err = r.restoreRun(gctx, run, frames, plan, files, fdc, &st, opts)
				}
				if err != nil {
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
	if err := rs.finishFiles(ctx); err != nil {
		return st, err
	}
	r.log.Debug("restore: files synced", "sync", time.Since(written))
	if opts.Record {
		if err := rs.writeRecord(treeIDs); err != nil {
			return st, err
		}
	}
	// Directories last and deepest first: writing into a directory
	// changes its mtime, and a read-only mode would stop later writes.
	sort.Slice(rs.dirs, func(i, j int) bool { return rs.dirs[i].node.Path > rs.dirs[j].node.Path })
	for _, d := range rs.dirs {
		if err := rs.finish(d, unix.O_RDONLY|unix.O_DIRECTORY); err != nil {
			return st, err
		}
	}
	for _, d := range append([]*RestoreDir{rs.root}, mapDirs(opts.Mounts)...) {
		if err := d.f.Sync(); err != nil {
			return st, fmt.Errorf("sync %s: %w", d.path, err)
		}
	}
	return st, nil
}

func mapDirs(m map[string]*RestoreDir) []*RestoreDir {
	out := make([]*RestoreDir, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	return out
}

// treeRestore is one run of RestoreTree.
type treeRestore struct {
	r     *Repository
	opts  RestoreOptions
	root  *RestoreDir
	dirs  []*placed
	links []*placed
	files []*restoreFile
	// compared counts the bytes markUnchanged read.
	compared atomic.Int64
}

// collect walks the tree once, placing every node and refusing, before
// anything is written, a node below a symlink no mount maps and a node
// placed outside the restore's directories.
func (rs *treeRestore) collect(ctx context.Context, idx *Index, treeIDs []ID) error {
	symlinks := map[string]bool{}
	return rs.r.WalkTree(ctx, idx, treeIDs, func(n *Node) error {
		for p := n.Path; ; {
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				break
			}
			if p = p[:i]; symlinks[p] {
				return fmt.Errorf("%s lies below the symlink %s, and a restore writes through no link: %w", n.Path, p, ErrCorrupt)
			}
		}
		_, mounted := rs.opts.Mounts[n.Path]
		if n.Type == NodeSymlink && !mounted {
			symlinks[n.Path] = true
		}
		pl, err := rs.place(n)
		if err != nil || pl == nil {
			return err
		}
		switch n.Type {
		case NodeDir:
			rs.dirs = append(rs.dirs, pl)
		case NodeSymlink:
			rs.links = append(rs.links, pl)
		case NodeFile:
			if pl.rel == "." {
				return fmt.Errorf("%s: a file cannot take the place of directory %s: %w", n.Path, pl.dir.path, ErrCorrupt)
			}
			rs.files = append(rs.files, &restoreFile{placed: *pl})
		}
		return nil
	})
}

// place finds where node n goes; nil leaves it out.
func (rs *treeRestore) place(n *Node) (*placed, error) {
	for m, d := range rs.opts.Mounts {
		switch {
		case n.Path == m && n.Type == NodeDir:
			return &placed{node: n, dir: d, rel: "."}, nil
		case n.Path == m && n.Type == NodeFile:
			return nil, fmt.Errorf("%s is a file where a directory or link is expected: %w", n.Path, ErrCorrupt)
		case strings.HasPrefix(n.Path, m+"/"):
			return &placed{node: n, dir: d, rel: n.Path[len(m)+1:]}, nil
		}
	}
	if rs.opts.Target == nil {
		return &placed{node: n, dir: rs.root, rel: n.Path}, nil
	}
	dst := rs.opts.Target(n.Path)
	if dst == "" {
		return nil, nil
	}
	rel, err := filepath.Rel(rs.root.path, dst)
	if err != nil || !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("restore: %s would be written to %s, outside %s", n.Path, dst, rs.root.path)
	}
	return &placed{node: n, dir: rs.root, rel: filepath.ToSlash(rel)}, nil
}

// zero says whether the file at tree path p is restored as zeros (Zero,
// which Delta overrides).
func (rs *treeRestore) zero(p string) bool {
	return rs.opts.Zero != nil && !rs.opts.Delta && rs.opts.Zero(p)
}

// owner is the owner a restored node gets.
func (rs *treeRestore) owner(n *Node) (uid, gid int) {
	uid, gid = int(n.UID), int(n.GID)
	if rs.opts.UID >= 0 {
		uid = rs.opts.UID
	}
	if rs.opts.GID >= 0 {
		gid = rs.opts.GID
	}
	return uid, gid
}

// chown gives the open file fd to the node's owner. Without root a
// restore cannot give files away; they stay the restoring user's, which
// is what PostgreSQL run by that user needs.
func (rs *treeRestore) chown(fd int, p *placed) error {
	uid, gid := rs.owner(p.node)
	if uid == os.Geteuid() && gid == os.Getegid() {
		return nil
	}
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil && os.Geteuid() == 0 {
		return fmt.Errorf("set owner of %s: %w", p.name(), err)
	}
	return nil
}

// makeDir makes a directory node, or takes the one there: a symlink or
// file in its place is removed, never followed.
func (rs *treeRestore) makeDir(d *placed) error {
	fd, err := d.dir.mkdirAll(d.rel)
	if errors.Is(err, ErrUnsafeTarget) && d.rel != "." {
		// Something else has the name (the parents are directories, or
		// mkdirAll would have failed on them first): replace it.
		pfd, base, perr := d.dir.parent(d.rel)
		if perr != nil {
			return fmt.Errorf("create directory %s: %w", d.name(), notDir(perr))
		}
		err = removeAllAt(pfd, base)
		unix.Close(pfd)
		if err != nil {
			return fmt.Errorf("replace %s: %w", d.name(), err)
		}
		fd, err = d.dir.mkdirAll(d.rel)
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	id, st, err := statID(fd)
	if err != nil {
		return fmt.Errorf("create directory %s: %w", d.name(), err)
	}
	d.id = id
	if os.Geteuid() != 0 && st.Mode&0o700 != 0o700 && st.Uid == uint32(os.Geteuid()) {
		// A read-only directory of ours from an earlier restore: the
		// recorded mode is put back once everything below is written.
		wfd, err := d.dir.open(d.rel, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err == nil {
			err = unix.Fchmod(wfd, st.Mode&0o7777|0o700)
			unix.Close(wfd)
		}
		if err != nil {
			return fmt.Errorf("make %s writable: %w", d.name(), err)
		}
	}
	return nil
}

// makeLink restores a symlink node as a link (through which nothing is
// written): a mounted one points to its directory.
func (rs *treeRestore) makeLink(l *placed) error {
	link := l.node.Link
	if d, ok := rs.opts.Mounts[l.node.Path]; ok {
		link = d.path
	}
	if l.rel == "." {
		return fmt.Errorf("%s: a symlink cannot take the place of directory %s: %w", l.node.Path, l.dir.path, ErrCorrupt)
	}
	if dir, _ := path.Split(l.rel); dir != "" {
		fd, err := l.dir.mkdirAll(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	pfd, base, err := l.dir.parent(l.rel)
	if err != nil {
		return fmt.Errorf("create symlink %s: %w", l.name(), notDir(err))
	}
	defer unix.Close(pfd)
	if cur, err := readlinkAt(pfd, base); err != nil || cur != link {
		if err := removeAllAt(pfd, base); err != nil {
			return fmt.Errorf("replace %s: %w", l.name(), err)
		}
		if err := unix.Symlinkat(link, pfd, base); err != nil {
			return fmt.Errorf("create symlink %s: %w", l.name(), err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open symlink %s: %w", l.name(), err)
	}
	defer unix.Close(fd)
	id, st, err := statID(fd)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return fmt.Errorf("symlink %s was replaced while the restore ran: %w", l.name(), ErrUnsafeTarget)
	}
	if err := rs.chown(fd, l); err != nil {
		return err
	}
	// A symlink's times are set by name: no descriptor of a link takes
	// them. The name is checked to be the link just made first; at worst
	// a swap in between moves a timestamp, never an owner, mode or byte.
	ts := unix.NsecToTimespec(l.node.MTime)
	if again, _, err := statAt(pfd, base); err != nil || again != id {
		return fmt.Errorf("symlink %s was replaced while the restore ran: %w", l.name(), ErrUnsafeTarget)
	}
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times of %s: %w", l.name(), err)
	}
	return nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func statAt(dirfd int, name string) (fileID, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileID{}, nil, err
	}
	return fileID{uint64(st.Dev), st.Ino}, &st, nil
}

// planRestore maps every block to write onto the frame that holds it.
func (r *Repository) planRestore(idx *Index, files []*restoreFile, delta bool, zero func(string) bool) (map[int][]blockTarget, []FrameLoc, error) {
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
		if zero(f.node.Path) {
			continue
		}
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
			plan[n] = append(plan[n], blockTarget{file: int32(fi), block: int32(bi), off: boff, inner: bl.Offset, length: bl.Len})
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
			err = r.checkFrameBlobs(frame, fl, plan[run[k]], files)
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
			if err := fdc.writeAt(files[t.file], int(t.file), frame[t.inner:end], t.off); err != nil {
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
func (r *Repository) checkFrameBlobs(frame []byte, fl FrameLoc, targets []blockTarget, files []*restoreFile) error {
	checked := make(map[ID]bool)
	for _, t := range targets {
		id := files[t.file].node.Blocks[t.block].ID
		if uint64(t.inner)+uint64(t.length) > uint64(len(frame)) {
			return fmt.Errorf("blob %s: outside its frame: %w", id.Short(), ErrCorrupt)
		}
		if !checked[id] {
			if err := r.checkBlob(id, frame[t.inner:t.inner+t.length]); err != nil {
				return fmt.Errorf("pack %s: %w", fl.Pack.Short(), err)
			}
			checked[id] = true
		}
	}
	return nil
}

// runBuffers recycles the buffers pack ranges are read into; allocating
// 16 MiB afresh for every range costs more than the copy.
var runBuffers = sync.Pool{New: func() any { b := make([]byte, 0); return &b }}

// frameBuffers recycles the buffers frames are decompressed into.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0); return &b }}

// createFile makes the file a node is written to: a new one (O_EXCL,
// 0600, after removing whatever had the name), or with Delta the one
// markUnchanged found reusable, checked to be still the same inode.
func (rs *treeRestore) createFile(f *restoreFile) error {
	if dir, _ := path.Split(f.rel); dir != "" {
		fd, err := f.dir.mkdirAll(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return err
		}
		unix.Close(fd)
	}
	pfd, base, err := f.dir.parent(f.rel)
	if err != nil {
		return fmt.Errorf("create file %s: %w", f.name(), notDir(err))
	}
	defer unix.Close(pfd)
	var fd int
	if f.keep != nil {
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", f.name(), err)
		}
		if id, _, err := statID(fd); err != nil || id != f.id {
			unix.Close(fd)
			return fmt.Errorf("%s was replaced while the restore ran: %w", f.name(), ErrUnsafeTarget)
		}
	} else {
		if err := removeAllAt(pfd, base); err != nil {
			return fmt.Errorf("replace %s: %w", f.name(), err)
		}
		fd, err = unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create file %s: %w", f.name(), err)
		}
		if f.id, _, err = statID(fd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("create file %s: %w", f.name(), err)
		}
	}
	err = unix.Ftruncate(fd, f.node.Size)
	if err == nil && f.keep == nil && f.node.Size > 0 && !rs.zero(f.node.Path) {
		// Reserve the file's blocks in one piece: blocks arrive out of
		// order (an incremental's pages land in the holes of its parent's
		// frames), and allocating them as they are written back fragments
		// the file and slows the disk. Without support it just stays sparse.
		_ = unix.Fallocate(fd, 0, 0, f.node.Size)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size %s: %w", f.name(), err)
	}
	return nil
}

// reusable says whether Delta may write into the file st describes
// rather than replace it: a regular file with no other name (a hard link
// could lead anywhere) that already belongs to the user it is restored
// for, and that this user may write.
func (rs *treeRestore) reusable(n *Node, st *unix.Stat_t) bool {
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return false
	}
	if os.Geteuid() != 0 {
		return st.Uid == uint32(os.Geteuid()) && st.Mode&0o200 != 0
	}
	uid, _ := rs.owner(n)
	return st.Uid == uint32(uid)
}

// markUnchanged finds the blocks of files already on disk that Delta may
// reuse, so it rewrites only the blocks that differ; any other file in
// the way is replaced. A file the record of the last restore vouches for
// is compared by its block lists; any other is read and hashed.
func (rs *treeRestore) markUnchanged(ctx context.Context, idx *Index, workers int) error {
	var rec *restoreRecord
	if rs.opts.Record {
		rec = rs.readRecord()
	}
	var mu sync.Mutex
	want := map[string]ID{} // recorded files whose content changed since
	var recorded []*restoreFile
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, f := range rs.files {
		g.Go(func() error {
			fd, err := f.dir.open(f.rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				return nil // absent, or not a file reached without a link: made anew
			}
			fh := os.NewFile(uintptr(fd), f.name())
			defer fh.Close()
			id, st, err := statID(fd)
			if err != nil {
				return fmt.Errorf("delta: %s: %w", f.name(), err)
			}
			if !rs.reusable(f.node, st) {
				return nil
			}
			f.id = id
			if rf, ok := rec.file(f.node.Path); ok && rf.sameFile(st) {
				if rf.Blocks == rs.r.crypt.blockListID(f.node.Blocks) {
					f.keep = keptBlocks(f.node.Blocks, f.node.Blocks)
					if rs.hasMetadata(f.node, st) {
						// Synced by the restore that recorded it.
						f.settled, f.final = true, st
					}
					return nil
				}
				mu.Lock()
				want[f.node.Path] = rf.Blocks
				recorded = append(recorded, f)
				mu.Unlock()
				return nil
			}
			return rs.hashBlocks(gctx, f, fh)
		})
	}
	if err := g.Wait(); err != nil || len(recorded) == 0 {
		return err
	}
	old := rs.recordedBlocks(ctx, idx, rec, want)
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, f := range recorded {
		if blocks, ok := old[f.node.Path]; ok {
			f.keep = keptBlocks(blocks, f.node.Blocks)
			continue
		}
		g.Go(func() error {
			fd, err := f.dir.open(f.rel, unix.O_RDONLY|unix.O_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("delta: %s: %w", f.name(), err)
			}
			fh := os.NewFile(uintptr(fd), f.name())
			defer fh.Close()
			if id, _, err := statID(fd); err != nil || id != f.id {
				return fmt.Errorf("%s was replaced while the restore ran: %w", f.name(), ErrUnsafeTarget)
			}
			return rs.hashBlocks(gctx, f, fh)
		})
	}
	return g.Wait()
}

// hasMetadata says whether st has the owner, mode and mtime finish
// would give node n.
func (rs *treeRestore) hasMetadata(n *Node, st *unix.Stat_t) bool {
	mode := uint32(n.Mode.Perm())
	for fm, um := range map[fs.FileMode]uint32{fs.ModeSetuid: unix.S_ISUID, fs.ModeSetgid: unix.S_ISGID, fs.ModeSticky: unix.S_ISVTX} {
		if n.Mode&fm != 0 {
			mode |= um
		}
	}
	uid, gid := rs.owner(n)
	return st.Mode&0o7777 == mode && st.Uid == uint32(uid) && st.Gid == uint32(gid) && st.Mtim.Nano() == n.MTime
}

// hashBlocks marks the blocks of f that the file on disk already holds.
func (rs *treeRestore) hashBlocks(ctx context.Context, f *restoreFile, fh *os.File) error {
	keep := make([]bool, len(f.node.Blocks))
	var off int64
	buf := make([]byte, 0, 64<<10)
	for i, b := range f.node.Blocks {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		buf = buf[:b.Len]
		n, err := fh.ReadAt(buf, off)
		off += int64(b.Len)
		if n < len(buf) {
			if err == io.EOF {
				break
			}
			return fmt.Errorf("delta: read %s: %w", f.name(), err)
		}
		keep[i] = rs.r.crypt.blobID(buf) == b.ID
	}
	rs.compared.Add(off)
	f.keep = keep
	return nil
}

func (rs *treeRestore) finishFiles(ctx context.Context) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(rs.opts.Workers * 4)
	for _, f := range rs.files {
		if !f.settled {
			g.Go(func() error { return rs.finish(&f.placed, unix.O_WRONLY|unix.O_NONBLOCK) })
		}
	}
	return g.Wait()
}

// finish syncs a file or directory the restore made and gives it its
// recorded owner, mode and times, all on one descriptor of the inode the
// restore made.
func (rs *treeRestore) finish(p *placed, flags int) error {
	fd, err := p.dir.open(p.rel, flags, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", p.name(), notDir(err))
	}
	f := os.NewFile(uintptr(fd), p.name())
	defer f.Close()
	if id, _, err := statID(fd); err != nil || id != p.id {
		return fmt.Errorf("%s was replaced while the restore ran: %w", p.name(), ErrUnsafeTarget)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.name(), err)
	}
	if err := rs.chown(fd, p); err != nil {
		return err
	}
	n := p.node
	if err := f.Chmod(n.Mode.Perm() | n.Mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return fmt.Errorf("set mode of %s: %w", p.name(), err)
	}
	if err := futimens(fd, n.MTime); err != nil {
		return fmt.Errorf("set times of %s: %w", p.name(), err)
	}
	if n.Type == NodeFile {
		if _, p.final, err = statID(fd); err != nil {
			return fmt.Errorf("stat %s: %w", p.name(), err)
		}
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

// writeAt writes into the file the restore made for rf, reopened beneath
// its directory and checked to be the same inode.
func (c *fdCache) writeAt(rf *restoreFile, key int, data []byte, off int64) error {
	c.mu.Lock()
	e, ok := c.open[key]
	if !ok {
		if len(c.open) >= c.max {
			c.evictLocked()
		}
		fd, err := rf.dir.open(rf.rel, unix.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			c.mu.Unlock()
			return fmt.Errorf("open %s: %w", rf.name(), notDir(err))
		}
		if id, _, err := statID(fd); err != nil || id != rf.id {
			unix.Close(fd)
			c.mu.Unlock()
			return fmt.Errorf("%s was replaced while the restore ran: %w", rf.name(), ErrUnsafeTarget)
		}
		e = &cachedFD{f: os.NewFile(uintptr(fd), rf.name())}
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
		return fmt.Errorf("write %s: %w", rf.name(), err)
	}
	return nil
}

// evictLocked closes the least recently used idle file. Files are synced
// later (finish), so closing early loses nothing.
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
