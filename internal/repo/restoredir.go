package repo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsafeTarget is returned when a restore target cannot be written
// safely: a symlink in its path another user could change, a directory
// every user may write to, an entry changed under the restore.
var ErrUnsafeTarget = errors.New("unsafe restore target")

// RestoreDir is a directory a restore writes below, held open by a
// descriptor from the moment it is opened. Every name below it is
// resolved beneath that descriptor without following any symlink (openat2
// with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or one component at a time
// with O_NOFOLLOW on kernels without openat2), and owners, modes and times
// are set on open descriptors: neither a link stored in a snapshot nor
// one another user plants or swaps in while the restore runs can carry a
// write, an owner or a mode outside the directory.
type RestoreDir struct {
	f       *os.File
	path    string
	created bool
	walk    bool // no openat2 on this kernel
	// A directory taken over (DirOptions.TakeOver) is root's and 0700
	// while the restore runs; Close gives it back.
	taken    bool
	prevUID  int
	prevGID  int
	prevMode uint32
	giveUID  int
	giveGID  int
	giveMode fs.FileMode
	give     bool
	closed   bool
	mu       sync.Mutex
	madeDirs map[string]bool // below the directory, made or found by mkdirAll
}

// DirOptions shape OpenRestoreDir.
type DirOptions struct {
	// Create makes the directory, and the directories above it, 0700
	// when they are missing.
	Create bool
	// TakeOver, as root, makes a directory that is not root's, or that
	// others may write to, root's and 0700 for as long as the restore
	// holds it, so no other user can reach what is being written; Close
	// gives it back (to its old owner and mode, or to what GiveTo says).
	// For directories a restore fills (a files target, a data directory,
	// a tablespace), not for shared ones a restore only adds a name to.
	TakeOver bool
}

// OpenRestoreDir opens the absolute directory path for a restore. The
// path is resolved one component at a time from /, following a symlink
// only when root or the current user owns it (the rule the kernel's
// protected_symlinks applies in shared directories): a link another user
// owns could be pointed anywhere between the check and the write.
func OpenRestoreDir(p string, o DirOptions) (*RestoreDir, error) {
	if !filepath.IsAbs(p) {
		return nil, fmt.Errorf("restore target %q is not an absolute path", p)
	}
	p = filepath.Clean(p)
	fd, created, err := resolveDir(p, o.Create)
	if err != nil {
		return nil, err
	}
	d := &RestoreDir{f: os.NewFile(uintptr(fd), p), path: p, created: created, madeDirs: map[string]bool{}}
	if pfd, err := unix.Openat2(fd, ".", &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: resolveFlags}); err == nil {
		unix.Close(pfd)
	} else if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		// No openat2 before Linux 5.6, or behind a seccomp profile that
		// predates it: names are then resolved one component at a time.
		d.walk = true
	} else {
		d.f.Close()
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if o.TakeOver {
		if err := d.takeOver(); err != nil {
			d.f.Close()
			return nil, err
		}
	}
	return d, nil
}

const resolveFlags = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// Path is the directory as it was named.
func (d *RestoreDir) Path() string { return d.path }

// Created reports whether OpenRestoreDir made the directory.
func (d *RestoreDir) Created() bool { return d.created }

// GiveTo sets the owner (uid or gid < 0 keeps it) and mode (0 keeps it)
// Close gives the directory, instead of the ones it had.
func (d *RestoreDir) GiveTo(uid, gid int, mode fs.FileMode) {
	d.give, d.giveUID, d.giveGID, d.giveMode = true, uid, gid, mode
}

// Close gives a directory taken over back (or to what GiveTo said),
// syncs it and closes it.
func (d *RestoreDir) Close() error {
	if d == nil || d.closed {
		return nil
	}
	d.closed = true
	var err error
	switch {
	case d.give:
		uid, gid := d.giveUID, d.giveGID
		if d.taken && uid < 0 {
			uid = d.prevUID
		}
		if d.taken && gid < 0 {
			gid = d.prevGID
		}
		if os.Geteuid() == 0 && (uid >= 0 || gid >= 0) {
			err = d.f.Chown(uid, gid)
		}
		switch {
		case err != nil:
		case d.giveMode != 0:
			err = d.f.Chmod(d.giveMode)
		case d.taken:
			err = unix.Fchmod(int(d.f.Fd()), d.prevMode)
		}
	case d.taken:
		err = d.f.Chown(d.prevUID, d.prevGID)
		if err == nil {
			err = unix.Fchmod(int(d.f.Fd()), d.prevMode)
		}
	}
	if err != nil {
		err = fmt.Errorf("give %s back: %w", d.path, err)
	} else if serr := d.f.Sync(); serr != nil {
		err = fmt.Errorf("sync %s: %w", d.path, serr)
	}
	if cerr := d.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	return err
}

// takeOver makes the directory root's and 0700 when another user owns
// it or may write to it; a sticky directory every user may write to (like
// /tmp) is refused, since taking it would lock everybody else out.
func (d *RestoreDir) takeOver() error {
	if os.Geteuid() != 0 {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &st); err != nil {
		return fmt.Errorf("stat %s: %w", d.path, err)
	}
	mode := st.Mode & 0o7777
	if st.Uid == 0 && mode&0o022 == 0 {
		return nil
	}
	if mode&0o1002 == 0o1002 {
		return fmt.Errorf("%s is a directory every user may write to: restore into a directory of its own below it: %w", d.path, ErrUnsafeTarget)
	}
	if err := d.f.Chown(0, 0); err != nil {
		return fmt.Errorf("take %s over for the restore: %w", d.path, err)
	}
	if err := unix.Fchmod(int(d.f.Fd()), 0o700); err != nil {
		return fmt.Errorf("take %s over for the restore: %w", d.path, err)
	}
	d.taken, d.prevUID, d.prevGID, d.prevMode = true, int(st.Uid), int(st.Gid), mode
	return nil
}

// Names lists the entries of the directory, sorted.
func (d *RestoreDir) Names() ([]string, error) {
	fd, err := unix.Openat(int(d.f.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	f := os.NewFile(uintptr(fd), d.path)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path, err)
	}
	return names, nil
}

// Lstat describes rel below the directory without following a symlink.
func (d *RestoreDir) Lstat(rel string) (fs.FileInfo, error) {
	fd, err := d.open(rel, unix.O_PATH, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.join(rel), Err: err}
	}
	f := os.NewFile(uintptr(fd), d.join(rel))
	defer f.Close()
	return f.Stat()
}

// MkdirAll makes rel and the directories above it (0700), through no
// symlink.
func (d *RestoreDir) MkdirAll(rel string) error {
	fd, err := d.mkdirAll(rel)
	if err != nil {
		return err
	}
	unix.Close(fd)
	return nil
}

// Chown gives rel (not what it links to) to uid and gid.
func (d *RestoreDir) Chown(rel string, uid, gid int) error {
	fd, err := d.open(rel, unix.O_PATH, 0)
	if err != nil {
		return fmt.Errorf("set owner of %s: %w", d.join(rel), err)
	}
	defer unix.Close(fd)
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set owner of %s: %w", d.join(rel), err)
	}
	return nil
}

// MkdirTemp makes a private (0700) directory with a fresh name below d
// and returns it open, its name resolved once, so another user of d
// cannot slip a directory of their own in its place.
func (d *RestoreDir) MkdirTemp(prefix string) (*RestoreDir, error) {
	var buf [8]byte
	for range 100 {
		if _, err := randRead(buf[:]); err != nil {
			return nil, err
		}
		name := prefix + hex.EncodeToString(buf[:])
		err := unix.Mkdirat(int(d.f.Fd()), name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create a directory in %s: %w", d.path, err)
		}
		fd, err := unix.Openat(int(d.f.Fd()), name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", filepath.Join(d.path, name), err)
		}
		return &RestoreDir{f: os.NewFile(uintptr(fd), filepath.Join(d.path, name)), path: filepath.Join(d.path, name),
			created: true, walk: d.walk, madeDirs: map[string]bool{}}, nil
	}
	return nil, fmt.Errorf("create a directory in %s: no free name", d.path)
}

// ProcPath names the open directory itself (/proc/<pid>/fd/<n>), for a
// child process that must work in exactly this directory whatever
// happens to its name meanwhile.
func (d *RestoreDir) ProcPath() string {
	return "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(d.f.Fd()))
}

// RemoveUnlisted removes every entry below the directory that keep
// refuses (rel is slash-separated), without following a symlink; it
// descends into the directories keep accepts.
func (d *RestoreDir) RemoveUnlisted(keep func(rel string) bool) error {
	var walk func(fd int, prefix string) error
	walk = func(fd int, prefix string) error {
		f := os.NewFile(uintptr(fd), d.join(prefix))
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			return fmt.Errorf("list %s: %w", d.join(prefix), err)
		}
		for _, name := range names {
			rel := path.Join(prefix, name)
			if !keep(rel) {
				if err := removeAllAt(fd, name); err != nil {
					return fmt.Errorf("remove %s: %w", d.join(rel), err)
				}
				continue
			}
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
				continue // a kept file or link
			}
			if err != nil {
				return fmt.Errorf("open %s: %w", d.join(rel), err)
			}
			if err := walk(sub, rel); err != nil {
				return err
			}
		}
		return nil
	}
	fd, err := unix.Openat(int(d.f.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	return walk(fd, "")
}

func (d *RestoreDir) join(rel string) string { return filepath.Join(d.path, filepath.FromSlash(rel)) }

// open resolves rel beneath the directory, following no symlink, not
// even as its last component (with O_PATH a symlink itself is opened).
func (d *RestoreDir) open(rel string, flags int, mode uint32) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if rel == "" {
		rel = "."
	}
	if !d.walk {
		for range 16 {
			fd, err := unix.Openat2(int(d.f.Fd()), rel, &unix.OpenHow{Flags: uint64(flags), Mode: uint64(mode), Resolve: resolveFlags})
			if errors.Is(err, unix.EAGAIN) {
				continue // a rename elsewhere raced the lookup
			}
			return fd, err
		}
		return -1, unix.EAGAIN
	}
	dir, base := path.Split(rel)
	cur := int(d.f.Fd())
	owned := false
	for _, c := range strings.Split(strings.TrimSuffix(dir, "/"), "/") {
		if c == "" || c == "." {
			continue
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if owned {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur, owned = next, true
	}
	fd, err := unix.Openat(cur, base, flags, mode)
	if owned {
		unix.Close(cur)
	}
	return fd, err
}

// parent opens the directory holding rel (O_PATH) and returns it with
// rel's last component.
func (d *RestoreDir) parent(rel string) (int, string, error) {
	dir, base := path.Split(rel)
	fd, err := d.open(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, base, err
}

// mkdirAll makes rel and every directory above it that is missing, one
// component at a time, and returns rel opened (O_PATH). Directories it
// made or found already are remembered, so a restore of many files in one
// directory does not walk the path again for each.
func (d *RestoreDir) mkdirAll(rel string) (int, error) {
	if rel == "" || rel == "." {
		return unix.Openat(int(d.f.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	}
	d.mu.Lock()
	known := d.madeDirs[rel]
	d.mu.Unlock()
	if known {
		fd, err := d.open(rel, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err == nil {
			return fd, nil
		}
	}
	cur, err := unix.Openat(int(d.f.Fd()), ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	done := ""
	for _, c := range strings.Split(rel, "/") {
		done = path.Join(done, c)
		if err := unix.Mkdirat(cur, c, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(cur)
			return -1, fmt.Errorf("create directory %s: %w", d.join(done), err)
		}
		next, err := unix.Openat(cur, c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("create directory %s: %w", d.join(done), notDir(err))
		}
		cur = next
		d.mu.Lock()
		d.madeDirs[done] = true
		d.mu.Unlock()
	}
	return cur, nil
}

// notDir names what ENOTDIR and ELOOP mean on a path resolved without
// following links: something that is not a directory is in the way.
func notDir(err error) error {
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("a symlink or file is in the way, and a restore writes through no link: %w", ErrUnsafeTarget)
	}
	return err
}

// removeAllAt removes name in the directory dirfd and, for a directory,
// everything below it, without following a symlink.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	fd, oerr := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(oerr, unix.ENOENT) {
		return nil
	}
	if oerr != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	for range 5 {
		names, err := f.Readdirnames(-1)
		if err != nil && err != io.EOF {
			return err
		}
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				return err
			}
		}
		err = unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
		if !errors.Is(err, unix.ENOTEMPTY) {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
	}
	return unix.ENOTEMPTY
}

// resolveDir opens the absolute, clean path p (O_PATH) one component at a
// time from /, following only symlinks root or the current user owns,
// and making missing directories when create is set.
func resolveDir(p string, create bool) (int, bool, error) {
	cur, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, err
	}
	fail := func(err error) (int, bool, error) {
		unix.Close(cur)
		return -1, false, err
	}
	rest := strings.Split(strings.TrimPrefix(p, "/"), "/")
	done, hops, created := "/", 0, false
	euid := uint32(os.Geteuid())
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			next, err := unix.Openat(cur, "..", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fail(err)
			}
			unix.Close(cur)
			cur, done = next, filepath.Dir(done)
			continue
		}
		fd, err := unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			if err := unix.Mkdirat(cur, c, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
				return fail(fmt.Errorf("create %s: %w", filepath.Join(done, c), err))
			}
			created = len(rest) == 0
			fd, err = unix.Openat(cur, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return fail(&fs.PathError{Op: "open", Path: filepath.Join(done, c), Err: err})
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fail(err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			unix.Close(cur)
			cur, done = fd, filepath.Join(done, c)
		case unix.S_IFLNK:
			link, err := readlinkFD(fd)
			unix.Close(fd)
			if err != nil {
				return fail(err)
			}
			if st.Uid != 0 && st.Uid != euid {
				return fail(fmt.Errorf("%s is a symlink user %d owns, who could point it anywhere while the restore runs: name the directory it leads to (%s): %w",
					filepath.Join(done, c), st.Uid, link, ErrUnsafeTarget))
			}
			if hops++; hops > 40 {
				return fail(&fs.PathError{Op: "open", Path: p, Err: unix.ELOOP})
			}
			if strings.HasPrefix(link, "/") {
				root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
				if err != nil {
					return fail(err)
				}
				unix.Close(cur)
				cur, done = root, "/"
			}
			rest = append(strings.Split(link, "/"), rest...)
		default:
			unix.Close(fd)
			return fail(fmt.Errorf("%s is not a directory", filepath.Join(done, c)))
		}
	}
	fd, err := unix.Openat(cur, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	unix.Close(cur)
	if err != nil {
		return -1, false, fmt.Errorf("open %s: %w", p, err)
	}
	return fd, created, nil
}

func readlinkFD(fd int) (string, error) {
	for n := 256; ; n *= 2 {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if got < n {
			return string(buf[:got]), nil
		}
	}
}

// futimens sets both times of the open file fd (utimensat with a NULL
// path, which x/sys/unix does not offer).
func futimens(fd int, ns int64) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(ns), unix.NsecToTimespec(ns)}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// fileID identifies an inode, to tell the file a restore made from one
// put in its place.
type fileID struct{ dev, ino uint64 }

func statID(fd int) (fileID, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fileID{}, nil, err
	}
	return fileID{uint64(st.Dev), st.Ino}, &st, nil
}

// Rename renames oldName to newName, both entries of the directory
// itself; newName may be an empty directory, which it replaces.
func (d *RestoreDir) Rename(oldName, newName string) error {
	if strings.Contains(oldName, "/") || strings.Contains(newName, "/") {
		return fmt.Errorf("rename %s to %s in %s: not entries of the directory", oldName, newName, d.path)
	}
	err := unix.Renameat(int(d.f.Fd()), oldName, int(d.f.Fd()), newName)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: d.join(oldName), New: d.join(newName), Err: err}
	}
	return nil
}
