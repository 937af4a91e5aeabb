// Package fs stores a repository's objects as files under a local directory.
//
// Each object is one file named by its object name. Put writes a hidden
// temporary file beside the target, fsyncs it and then hard-links it to the
// final name: link(2) fails if the name exists, which gives the atomic
// create-if-absent the storage contract demands without a lock. A writer that
// dies leaves only a temporary file, which List never reports and CleanTemp
// removes.
package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

const (
	dirMode = 0o700
	// tempPrefix starts every temporary file's name. Object names never begin
	// with a dot (storage.ValidateName), so a temporary file can never be
	// taken for an object.
	tempPrefix = ".tmp-"
	copyBuffer = 1 << 20
)

type backend struct {
	root string // absolute, cleaned

	// durable records directories (relative, slash form) known to exist
	// with their entry fsynced in the parent, so that each is made durable
	// once per process rather than once per Put.
	mu      sync.Mutex
	durable map[string]bool

	closed atomic.Bool

	// foreign, when set, refuses every write: the directory belongs to
	// another user, whom what this process wrote would lock out.
	foreign error
	// owner, when set, is who each file and directory this process makes
	// is given to (root writing on the owner's behalf).
	owner *owner
}

type owner struct{ uid, gid int }

var (
	_ storage.Backend     = (*backend)(nil)
	_ storage.Temporaries = (*backend)(nil)
)

// Options shape how a repository directory is opened.
type Options struct {
	// AsOwner lets root write a directory another user owns: what it
	// makes is given to that user. Without it such a directory is
	// read-only to this process.
	AsOwner bool
}

// New opens the repository directory root, which must already exist (see
// Create): a missing directory is far more likely a typo or an unmounted
// disk than a wish for a new repository.
func New(root string) (storage.Backend, error) { return Open(root, Options{}) }

// Open is New with options. A directory another user owns is opened for
// reading only (writes fail with storage.ErrPermission, saying whom to run
// as), unless root opens it with AsOwner: objects written as root would be
// unreadable to the user whose archive_command and restores need them.
func Open(root string, o Options) (storage.Backend, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, storage.Permanent(fmt.Errorf("repository directory %s: %w", root, err))
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return nil, storage.Permanent(fmt.Errorf("repository directory %s does not exist", abs))
	case err != nil:
		return nil, storage.Permanent(fmt.Errorf("repository directory %s: %w", abs, err))
	case !fi.IsDir():
		return nil, storage.Permanent(fmt.Errorf("repository path %s is not a directory", abs))
	}
	b := &backend{root: abs, durable: map[string]bool{".": true}}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		dirOwner, me := userName(int(st.Uid)), userName(os.Geteuid())
		switch {
		case o.AsOwner && os.Geteuid() == 0:
			b.owner = &owner{uid: int(st.Uid), gid: int(st.Gid)}
		case o.AsOwner:
			b.foreign = fmt.Errorf("repository directory %s belongs to %s; --as-owner lets only root write on another user's behalf, and this runs as %s: %w",
				abs, dirOwner, me, storage.ErrPermission)
		default:
			b.foreign = fmt.Errorf("repository directory %s belongs to %s but this runs as %s, whose files %s could not read: run as %s (runuser -u %s -- lifeboat ...), or as root with --as-owner to write on its behalf: %w",
				abs, dirOwner, me, dirOwner, dirOwner, dirOwner, storage.ErrPermission)
		}
	}
	return b, nil
}

// userName names a uid for messages: its login name, or "uid N".
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return "uid " + strconv.Itoa(uid)
}

// checkWrite refuses a write this process must not make, and a write
// after Close.
func (b *backend) checkWrite(op, name string) error {
	if err := b.checkOpen(op, name); err != nil {
		return err
	}
	if b.foreign != nil {
		return storage.Permanent(fmt.Errorf("%s %s: %w", op, name, b.foreign))
	}
	return nil
}

// chown gives what this process made to the directory's owner, when root
// writes on its behalf.
func (b *backend) chown(f *os.File, path string) error {
	if b.owner == nil {
		return nil
	}
	var err error
	if f != nil {
		err = f.Chown(b.owner.uid, b.owner.gid)
	} else {
		err = os.Lchown(path, b.owner.uid, b.owner.gid)
	}
	if err != nil {
		return fmt.Errorf("give %s to the repository's owner: %w", path, err)
	}
	return nil
}

// Create makes root (and any missing parents) for a new repository, readable
// by the owner only since it holds the repository's key files.
func Create(root string) error {
	abs, err := filepath.Abs(root)
	if err != nil {
		return fmt.Errorf("create repository directory %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return fmt.Errorf("create repository directory: %w", err)
	}
	if err := durable.SyncDir(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("create repository directory %s: %w", abs, err)
	}
	return nil
}

func (b *backend) Location() string { return "file://" + filepath.ToSlash(b.root) }

// Close marks the backend closed. It holds no handle between calls, so
// there is nothing else to release.
func (b *backend) Close() error {
	b.closed.Store(true)
	return nil
}

// checkOpen fails a call made after Close.
func (b *backend) checkOpen(op, name string) error {
	if b.closed.Load() {
		return fmt.Errorf("%s %s in %s: %w", op, name, b.Location(), storage.ErrClosed)
	}
	return nil
}

// path maps a validated object name to its file.
func (b *backend) path(name string) string {
	return filepath.Join(b.root, filepath.FromSlash(name))
}

func (b *backend) Put(ctx context.Context, name string, body io.ReadSeeker, size int64) error {
	if err := b.checkWrite("put", name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	p := b.path(name)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	if size < 0 {
		return storage.Permanent(fmt.Errorf("put %s: negative size %d", p, size))
	}
	// Cheap early answer; link below is what actually decides.
	if fi, err := os.Lstat(p); err == nil {
		return existsError(p, fi)
	}
	f, err := b.createTemp(path.Dir(name))
	if err != nil {
		return fmt.Errorf("put %s: %w", p, noSpace(err))
	}
	tmp, err := writeTemp(ctx, f, body, size)
	if err != nil {
		return fmt.Errorf("put %s: %w", p, noSpace(err))
	}
	linkErr := os.Link(tmp, p)
	// The temporary name is only scaffolding: drop it whether or not the
	// link won. Should removal fail, CleanTemp gets it later.
	_ = os.Remove(tmp)
	if linkErr != nil {
		if errors.Is(linkErr, iofs.ErrExist) {
			if fi, err := os.Lstat(p); err == nil {
				return existsError(p, fi)
			}
		}
		// Not classify: a vanished temporary file or directory is no
		// reason to tell the caller the object is missing.
		return fmt.Errorf("put %s: %w", p, noSpace(b.denied(linkErr)))
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("put %s: %w", p, err)
	}
	return nil
}

// existsError reports a name that is taken. A directory in the way is not an
// object and so not ErrExists: the caller's name collides with the layout.
func existsError(p string, fi iofs.FileInfo) error {
	if fi.Mode().IsRegular() {
		return fmt.Errorf("put %s: %w", p, storage.ErrExists)
	}
	what := "a special file"
	if fi.IsDir() {
		what = "a directory"
	}
	return storage.Permanent(fmt.Errorf("put %s: %s holds that name", p, what))
}

// createTemp creates a temporary file in the object directory rel, creating
// the directory first if need be.
func (b *backend) createTemp(rel string) (*os.File, error) {
	dir := filepath.Join(b.root, filepath.FromSlash(rel))
	for attempt := 0; ; attempt++ {
		if err := b.ensureDir(rel); err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(dir, tempPrefix+"*")
		if err == nil {
			if err := b.chown(f, f.Name()); err != nil {
				f.Close()
				os.Remove(f.Name())
				return nil, err
			}
			return f, nil
		}
		if attempt == 0 && errors.Is(err, iofs.ErrNotExist) {
			// Someone removed a directory we had made durable; make it
			// again.
			b.forgetDirs()
			continue
		}
		return nil, fmt.Errorf("create temporary file: %w", b.denied(err))
	}
}

// writeTemp copies exactly size bytes of body into the temporary file f,
// fsyncs and closes it, and returns its path. On error nothing is left
// behind.
func writeTemp(ctx context.Context, f *os.File, body io.Reader, size int64) (tmpPath string, err error) {
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	// One byte beyond size tells a body longer than promised from an exact one.
	src := io.LimitReader(&ctxReader{ctx: ctx, r: body}, size+1)
	n, err := io.CopyBuffer(writerOnly{f}, src, make([]byte, copyBuffer))
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return "", ctxErr
		}
		return "", fmt.Errorf("copy body: %w", err)
	}
	if n != size {
		return "", storage.Permanent(fmt.Errorf("body is %s bytes, want %d", lengthDesc(n, size), size))
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("close %s: %w", f.Name(), err)
	}
	return f.Name(), nil
}

func lengthDesc(n, size int64) string {
	if n > size {
		return fmt.Sprintf("more than %d", size)
	}
	return fmt.Sprint(n)
}

func (b *backend) forgetDirs() {
	b.mu.Lock()
	b.durable = map[string]bool{".": true}
	b.mu.Unlock()
}

// ensureDir creates the object directory rel (slash form, "." for the root)
// and makes each created entry durable by fsyncing its parent.
func (b *backend) ensureDir(rel string) error {
	b.mu.Lock()
	ok := b.durable[rel]
	b.mu.Unlock()
	if ok {
		return nil
	}
	// Walk down from the root so that each level's parent exists when we
	// fsync it. A directory that already existed is fsynced in its parent
	// too: it may have been created an instant ago by a writer that has not
	// yet made it durable.
	cur := "."
	for seg := range strings.SplitSeq(rel, "/") {
		parent := cur
		cur = path.Join(cur, seg)
		b.mu.Lock()
		ok := b.durable[cur]
		b.mu.Unlock()
		if ok {
			continue
		}
		abs := filepath.Join(b.root, filepath.FromSlash(cur))
		if err := os.Mkdir(abs, dirMode); err == nil {
			if err := b.chown(nil, abs); err != nil {
				return err
			}
		} else {
			if !errors.Is(err, iofs.ErrExist) {
				return fmt.Errorf("create directory: %w", b.denied(err))
			}
			// An object may hold the name a directory needs; no retry
			// will move it.
			if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
				return storage.Permanent(fmt.Errorf("create directory %s: an object holds that name", abs))
			}
		}
		if err := durable.SyncDir(filepath.Join(b.root, filepath.FromSlash(parent))); err != nil {
			return err
		}
		b.mu.Lock()
		b.durable[cur] = true
		b.mu.Unlock()
	}
	return nil
}

func (b *backend) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	f, _, err := b.open(ctx, "get", name)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func (b *backend) GetRange(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	f, fi, err := b.open(ctx, "get range of", name)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 || offset > fi.Size()-length {
		_ = f.Close()
		return nil, storage.Permanent(fmt.Errorf("get range of %s: range [%d, %d+%d) outside object of %d bytes",
			f.Name(), offset, offset, length, fi.Size()))
	}
	return sectionReadCloser{io.NewSectionReader(f, offset, length), f}, nil
}

type sectionReadCloser struct {
	*io.SectionReader
	io.Closer
}

// open opens the object file, treating anything but a regular file as absent:
// a directory that merely holds other objects is not an object.
func (b *backend) open(ctx context.Context, op, name string) (*os.File, iofs.FileInfo, error) {
	if err := b.checkOpen(op, name); err != nil {
		return nil, nil, err
	}
	if err := storage.ValidateName(name); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", op, err)
	}
	p := b.path(name)
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", op, p, err)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", op, p, classify(err))
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, p, classify(err))
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, nil, fmt.Errorf("%s %s: %w", op, p, storage.ErrNotFound)
	}
	return f, fi, nil
}

func (b *backend) Stat(ctx context.Context, name string) (storage.ObjectInfo, error) {
	if err := b.checkOpen("stat", name); err != nil {
		return storage.ObjectInfo{}, err
	}
	if err := storage.ValidateName(name); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat: %w", err)
	}
	p := b.path(name)
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", p, err)
	}
	fi, err := os.Lstat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotFound
	}
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", p, classify(err))
	}
	return storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (b *backend) Delete(ctx context.Context, name string) error {
	if err := b.checkWrite("delete", name); err != nil {
		return err
	}
	if err := storage.ValidateName(name); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	p := b.path(name)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	// os.Remove would happily remove an empty directory; only objects go.
	fi, err := os.Lstat(p)
	if err == nil && !fi.Mode().IsRegular() {
		err = storage.ErrNotFound
	}
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, classify(err))
	}
	if err := durable.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}

func (b *backend) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := b.checkOpen("list", fmt.Sprintf("%q", prefix)); err != nil {
		return err
	}
	// Start in the deepest directory the prefix names outright; the rest of
	// the prefix filters that directory's entries only, since every name
	// below a matching entry matches too.
	dir, rest := "", prefix
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		dir, rest = prefix[:i], prefix[i+1:]
		if storage.ValidateName(dir) != nil {
			return nil // no valid name starts with this prefix
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %q in %s: %w", prefix, b.Location(), err)
	}
	err := b.walk(ctx, dir, func(entry string) bool { return strings.HasPrefix(entry, rest) }, fn)
	if err != nil {
		return fmt.Errorf("list %q in %s: %w", prefix, b.Location(), err)
	}
	return nil
}

// walk reports the objects under the object directory dir ("" for the root)
// in lexical order of their full names. keep filters dir's own entries.
func (b *backend) walk(ctx context.Context, dir string, keep func(string) bool, fn func(storage.ObjectInfo) error) error {
	entries, err := os.ReadDir(filepath.Join(b.root, filepath.FromSlash(dir)))
	if err != nil {
		// Gone or never created (a prefix nothing has been written under,
		// or a directory deleted while we walk): it holds no objects.
		if errors.Is(err, iofs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return nil
		}
		return err
	}
	type item struct {
		key   string // sorts like the full names below it
		entry iofs.DirEntry
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		n := e.Name()
		// Temporary files, and anything else no object could be named.
		if storage.ValidateName(n) != nil || (keep != nil && !keep(n)) {
			continue
		}
		switch {
		case e.IsDir():
			// "a-b" < "a/x" < "a.b" would fail plain name order: '-' and
			// '.' sort before '/'. Keying a directory by its name plus "/"
			// puts its contents exactly where their full names belong.
			items = append(items, item{n + "/", e})
		case e.Type().IsRegular():
			items = append(items, item{n, e})
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].key < items[j].key })
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := it.entry.Name()
		if dir != "" {
			name = dir + "/" + name
		}
		if it.entry.IsDir() {
			if err := b.walk(ctx, name, nil, fn); err != nil {
				return err
			}
			continue
		}
		fi, err := it.entry.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			continue // deleted since ReadDir
		}
		if err != nil {
			return err
		}
		if err := fn(storage.ObjectInfo{Name: name, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}

// ListTemp reports the temporary files under the root: the leftovers of
// writers that died mid-Put, which List never shows.
func (b *backend) ListTemp(ctx context.Context, fn func(storage.ObjectInfo) error) error {
	if err := b.checkOpen("list temporary files in", b.root); err != nil {
		return err
	}
	err := filepath.WalkDir(b.root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) && p != b.root {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if errors.Is(err, iofs.ErrNotExist) {
			return nil // its Put ended meanwhile
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		return fn(storage.ObjectInfo{Name: filepath.ToSlash(rel), Size: fi.Size(), ModTime: fi.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("list temporary files in %s: %w", b.Location(), err)
	}
	return nil
}

// RemoveTemp is CleanTemp for the backend's root.
func (b *backend) RemoveTemp(ctx context.Context, cutoff time.Time) (int, error) {
	if err := b.checkWrite("remove temporary files", "."); err != nil {
		return 0, err
	}
	if err := b.checkOpen("remove temporary files in", b.root); err != nil {
		return 0, err
	}
	return CleanTemp(ctx, b.root, cutoff)
}

// CleanTemp removes temporary files under root last modified before cutoff:
// the leftovers of writers that died mid-Put. Pick a cutoff well before any
// Put that may still be running (an hour or a day ago); removing a live
// writer's file makes its Put fail, though never corrupts an object. It
// returns how many files it removed.
func CleanTemp(ctx context.Context, root string, cutoff time.Time) (int, error) {
	removed := 0
	err := filepath.WalkDir(root, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) && p != root {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || !strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, iofs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !fi.ModTime().Before(cutoff) {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, iofs.ErrNotExist) {
			return err
		}
		removed++
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("clean temporary files in %s: %w", root, err)
	}
	return removed, nil
}

// classify maps filesystem errors onto the storage contract: a missing file
// is ErrNotFound, and a permission problem will not cure itself.
func classify(err error) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return err
	case errors.Is(err, iofs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w (%w)", storage.ErrNotFound, err)
	case errors.Is(err, iofs.ErrPermission):
		return storage.Permanent(err)
	}
	return err
}

// noSpace marks a failure for lack of space or quota with
// storage.ErrNoSpace. Put uses it only before the object got its name, so
// the mark's promise holds: nothing was stored.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", storage.ErrNoSpace, err)
	}
	return err
}

// denied marks a write the directory's permissions refuse: it will not
// cure itself, and the message says what to change, since the directory
// is this process's own (another user's is refused up front, see Open).
func (b *backend) denied(err error) error {
	if !errors.Is(err, iofs.ErrPermission) {
		return err
	}
	me := userName(os.Geteuid())
	return storage.Permanent(fmt.Errorf("%w: the repository directory %s is not writable by %s (read-only mount or mode): make it writable (chmod -R u+w %s) or run as a user who may write it: %w",
		err, b.root, me, b.root, storage.ErrPermission))
}

// ctxReader stops a copy at the next chunk once ctx is done, so a cancelled
// Put does not run to the end of a large body.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// writerOnly hides *os.File's ReadFrom so io.CopyBuffer uses our buffer and
// our ctx-checking reader on every chunk.
type writerOnly struct{ w io.Writer }

func (w writerOnly) Write(p []byte) (int, error) { return w.w.Write(p) }
