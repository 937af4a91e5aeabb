package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// BackupOptions describe one backup of a files asset.
type BackupOptions struct {
	Asset string
	// Paths are the roots: absolute directories or files. A root that is
	// a symlink is stored as the symlink, not what it points to.
	Paths []string
	// Exclude are shell glob patterns (filepath.Match). An entry below a
	// root is left out when a pattern matches its base name, its path
	// relative to the root, or (for a pattern starting with "/") its
	// absolute path. An excluded directory is not descended into. Roots
	// themselves are never excluded.
	Exclude []string
	// LockWait is how long to wait for another backup of the asset.
	LockWait time.Duration
	Log      *slog.Logger
}

// Info is what a files snapshot records beside its tree (Snapshot.Extra):
// the roots and patterns it was taken with, and what it left out.
type Info struct {
	Paths    []string `json:"paths"`
	Exclude  []string `json:"exclude,omitempty"`
	Dirs     int64    `json:"dirs"`
	Symlinks int64    `json:"symlinks"`
	// Excluded counts entries an exclude pattern matched (a directory
	// counts once, whatever it held).
	Excluded int64 `json:"excluded"`
	// Special counts sockets, named pipes and devices, which are skipped.
	Special int64 `json:"skipped_special"`
	// Vanished counts entries that disappeared (or turned into another
	// type of file) between being listed and being read.
	Vanished int64 `json:"vanished"`
	// Changed lists files that kept changing while they were read (the
	// first maxChangedListed of ChangedCount): their stored copy may mix
	// old and new content.
	Changed      []string `json:"changed_while_read,omitempty"`
	ChangedCount int64    `json:"changed_while_read_count,omitempty"`
}

const (
	// readAttempts is how often a file that changes while it is read is
	// read again before what was read last is kept (and reported).
	readAttempts     = 3
	maxChangedListed = 100
)

// errChanged stops the read of a file that changed under it, so the
// session records nothing for that attempt and the file is read again.
var errChanged = errors.New("file changed while it was read")

// Backup stores the asset's roots as one snapshot. It records nothing
// unless it returns nil; a file it cannot read (permissions) fails it.
func Backup(ctx context.Context, r *repo.Repository, opts BackupOptions) (*repo.Snapshot, *Info, error) {
	return backup(ctx, r, opts, nil)
}

// backup is Backup; tests pass afterStat, called with each file's path
// once it is open and its size taken, to change files under the backup.
func backup(ctx context.Context, r *repo.Repository, opts BackupOptions, afterStat func(abs string)) (*repo.Snapshot, *Info, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if err := CheckRoots(opts.Paths); err != nil {
		return nil, nil, err
	}
	for _, p := range opts.Exclude {
		if _, err := filepath.Match(p, ""); err != nil || p == "" {
			return nil, nil, fmt.Errorf("exclude pattern %q: not a valid glob: %w", p, ErrPaths)
		}
	}
	roots := make([]string, len(opts.Paths))
	for i, p := range opts.Paths {
		roots[i] = filepath.Clean(p)
		// Checked before the lock is taken, so a mistyped path fails at
		// once and plainly.
		if _, err := os.Lstat(roots[i]); errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("path %s does not exist", roots[i])
		} else if err != nil {
			return nil, nil, unreadable(roots[i], err)
		}
	}
	sess, err := treestore.Begin(ctx, r, treestore.Options{Asset: opts.Asset, Kind: KindName, LockWait: opts.LockWait, Log: opts.Log})
	if err != nil {
		return nil, nil, err
	}
	defer sess.Abort()
	w := &walker{ctx: ctx, sess: sess, exclude: opts.Exclude, log: opts.Log, afterStat: afterStat,
		info: &Info{Paths: roots, Exclude: opts.Exclude}}
	top := buildTrie(roots)
	if top.root {
		err = w.real("", "/", "/") // "/" itself has no tree path; its entries are the top level
	} else {
		err = w.synthetic("", "/", top)
	}
	if err != nil {
		return nil, nil, err
	}
	snap, err := sess.Commit(ctx, "full", w.info)
	if err != nil {
		return nil, nil, err
	}
	return snap, w.info, nil
}

// trie holds the roots by path component: the directories above the
// roots are walked through it, the roots themselves from the disk.
type trie struct {
	children map[string]*trie
	root     bool
}

func buildTrie(roots []string) *trie {
	top := &trie{children: map[string]*trie{}}
	for _, r := range roots {
		t := top
		if r != "/" {
			for _, part := range strings.Split(r[1:], "/") {
				c := t.children[part]
				if c == nil {
					c = &trie{children: map[string]*trie{}}
					t.children[part] = c
				}
				t = c
			}
		}
		t.root = true
	}
	return top
}

type walker struct {
	ctx       context.Context
	sess      *treestore.Session
	exclude   []string
	log       *slog.Logger
	info      *Info
	afterStat func(abs string)
}

// item is one entry of a directory: its node and, for a directory whose
// entries are stored too, how to walk them.
type item struct {
	abs     string
	node    *repo.Node
	descend func() error
}

// level stores the entries of one directory and everything below them in
// tree order. Tree order compares whole paths byte by byte, so a
// directory's entries do not simply follow it: "a" < "a.b" < "a/b"
// because '.' sorts before '/'. Each entry is therefore stored at the key
// of its name and its contents at the key name+"/"; no other entry's key
// can fall between name+"/" and the paths below it.
func (w *walker) level(items []item) error {
	type event struct {
		key  string
		it   *item
		down bool
	}
	evs := make([]event, 0, 2*len(items))
	for i := range items {
		it := &items[i]
		name := it.node.Path[strings.LastIndexByte(it.node.Path, '/')+1:]
		evs = append(evs, event{key: name, it: it})
		if it.descend != nil {
			evs = append(evs, event{key: name + "/", it: it, down: true})
		}
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].key < evs[j].key })
	for _, ev := range evs {
		if err := w.ctx.Err(); err != nil {
			return err
		}
		var err error
		if ev.down {
			err = ev.it.descend()
		} else {
			err = w.add(ev.it)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// synthetic stores the directories on the way to the roots, and the
// roots. The directories above a root are recorded as what they lead to
// (stat, not lstat): a symlink there must not become a symlink node with
// the root's files below it, which a restore would write through.
func (w *walker) synthetic(prefix, abs string, t *trie) error {
	items := make([]item, 0, len(t.children))
	for name, c := range t.children {
		cabs, tp := filepath.Join(abs, name), joinTree(prefix, name)
		if c.root {
			fi, err := os.Lstat(cabs)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("path %s does not exist", cabs)
			}
			if err != nil {
				return unreadable(cabs, err)
			}
			it, ok, err := w.entry(tp, cabs, cabs, fi)
			if err != nil {
				return err
			}
			if ok {
				items = append(items, it)
			}
			continue
		}
		fi, err := os.Stat(cabs)
		if err != nil {
			return unreadable(cabs, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", cabs)
		}
		items = append(items, item{abs: cabs, node: nodeFor(tp, fi), descend: func() error { return w.synthetic(tp, cabs, c) }})
	}
	return w.level(items)
}

// real stores the entries of directory dir below root, and what is below
// them.
func (w *walker) real(prefix, dir, root string) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		w.vanished(dir)
		return nil
	}
	if err != nil {
		return unreadable(dir, err)
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return unreadable(dir, err)
	}
	items := make([]item, 0, len(names))
	for _, name := range names {
		abs := filepath.Join(dir, name)
		rel := strings.TrimPrefix(strings.TrimPrefix(abs, root), "/") // the path below the root
		if w.excluded(name, rel, abs) {
			w.info.Excluded++
			continue
		}
		fi, err := os.Lstat(abs)
		if errors.Is(err, fs.ErrNotExist) {
			w.vanished(abs)
			continue
		}
		if err != nil {
			return unreadable(abs, err)
		}
		it, ok, err := w.entry(joinTree(prefix, name), abs, root, fi)
		if err != nil {
			return err
		}
		if ok {
			items = append(items, it)
		}
	}
	return w.level(items)
}

// entry turns a listed file into an item, or skips it (false).
func (w *walker) entry(tp, abs, root string, fi fs.FileInfo) (item, bool, error) {
	if kind := special(fi.Mode()); kind != "" {
		w.log.Warn("skipped: not a regular file, directory or symlink", "path", abs, "type", kind)
		w.info.Special++
		return item{}, false, nil
	}
	it := item{abs: abs, node: nodeFor(tp, fi)}
	switch it.node.Type {
	case repo.NodeSymlink:
		link, err := os.Readlink(abs)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EINVAL) {
			w.vanished(abs) // gone, or no longer a symlink
			return item{}, false, nil
		}
		if err != nil {
			return item{}, false, unreadable(abs, err)
		}
		it.node.Link = link
	case repo.NodeDir:
		it.descend = func() error { return w.real(tp, abs, root) }
	}
	return it, true, nil
}

func (w *walker) excluded(name, rel, abs string) bool {
	for _, p := range w.exclude {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
		if ok, _ := filepath.Match(p, rel); ok {
			return true
		}
		if strings.HasPrefix(p, "/") {
			if ok, _ := filepath.Match(p, abs); ok {
				return true
			}
		}
	}
	return false
}

func (w *walker) add(it *item) error {
	switch it.node.Type {
	case repo.NodeFile:
		return w.addFile(it.node, it.abs)
	case repo.NodeDir:
		w.info.Dirs++
	case repo.NodeSymlink:
		w.info.Symlinks++
	}
	return w.sess.Add(w.ctx, it.node, nil)
}

// addFile stores one regular file. A file that changes while it is read
// is read again, up to readAttempts times; then what was read last is
// kept and the file is reported.
func (w *walker) addFile(n *repo.Node, abs string) error {
	for attempt := 1; ; attempt++ {
		// O_NOFOLLOW and O_NONBLOCK: a file swapped since it was listed
		// for a symlink is not followed, and for a named pipe does not
		// block the backup.
		f, err := os.OpenFile(abs, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
			w.vanished(abs)
			return nil
		}
		if err != nil {
			return unreadable(abs, err)
		}
		stored, err := w.readFile(n, f, abs, attempt == readAttempts)
		f.Close()
		if errors.Is(err, errChanged) {
			w.log.Debug("file changed while read; reading it again", "path", abs, "attempt", attempt)
			continue
		}
		if err != nil {
			return err
		}
		if !stored {
			w.vanished(abs)
		}
		return nil
	}
}

// readFile stores the open file f as node n, with the metadata of the
// open file (so content and metadata belong together). It returns false
// when f is no longer a regular file.
func (w *walker) readFile(n *repo.Node, f *os.File, abs string, last bool) (bool, error) {
	before, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", abs, err)
	}
	if !before.Mode().IsRegular() {
		return false, nil
	}
	if w.afterStat != nil {
		w.afterStat(abs)
	}
	meta := nodeFor(n.Path, before)
	n.Mode, n.UID, n.GID, n.MTime = meta.Mode, meta.UID, meta.GID, meta.MTime
	// Read no more than the size at open: a file appended to without end
	// (a log) would otherwise never reach its end.
	src := &watchedReader{f: f, r: io.LimitReader(f, before.Size()), before: before, last: last}
	if err := w.sess.Add(w.ctx, n, src); err != nil {
		if errors.Is(err, errChanged) {
			return false, errChanged
		}
		return false, unreadable(abs, err)
	}
	if src.changed {
		w.log.Warn("file kept changing while it was read; its stored copy may mix old and new content", "path", abs)
		w.info.ChangedCount++
		if len(w.info.Changed) < maxChangedListed {
			w.info.Changed = append(w.info.Changed, abs)
		}
	}
	return true, nil
}

func (w *walker) vanished(abs string) {
	w.log.Warn("vanished or replaced during the backup; left out", "path", abs)
	w.info.Vanished++
}

// watchedReader reads a file and, at its end, checks that the file did
// not change while it was read: size, modification and change times as
// they were at the start, and as many bytes read as the size said.
type watchedReader struct {
	f       *os.File
	r       io.Reader
	before  fs.FileInfo
	n       int64
	last    bool // the last attempt: keep what was read, and say so
	changed bool
}

func (r *watchedReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err == io.EOF && r.changedSinceOpen() {
		if !r.last {
			return n, errChanged
		}
		r.changed = true
	}
	return n, err
}

func (r *watchedReader) changedSinceOpen() bool {
	if r.n != r.before.Size() {
		return true
	}
	after, err := r.f.Stat()
	if err != nil {
		return true
	}
	if after.Size() != r.before.Size() || !after.ModTime().Equal(r.before.ModTime()) {
		return true
	}
	a, ok1 := after.Sys().(*syscall.Stat_t)
	b, ok2 := r.before.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && a.Ctim != b.Ctim
}

// unreadable is the error for a file or directory the backup may not
// read: the backup fails rather than record a snapshot without it.
func unreadable(abs string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("cannot read %s: permission denied; run the backup as a user who can read it, or exclude it", abs)
	}
	return err
}

func joinTree(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "/" + name
}
