// Package files backs up directories and files (the files asset kind):
// configuration and uploaded files with their modes, owners, symlinks and
// modification times, restores the whole tree or one path of it, and
// compares two snapshots (added, removed and changed files, with a line
// diff of small text files) for the configuration history.
//
// Each root is stored under the tree path its absolute path gives
// (/etc/drop/app.conf becomes etc/drop/app.conf), so several roots never
// collide and a restore puts each back at the same place below its
// target directory. The directories above a root are recorded too, as
// directories, so a restore recreates them with their modes and owners.
package files

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// KindName is the kind recorded in the snapshots of a files asset.
const KindName = "files"

// ErrPaths marks a list of roots that cannot be backed up as given
// (relative, listed twice, or one inside another): a policy mistake.
var ErrPaths = errors.New("invalid paths")

// treePath is the tree path a file at absolute path p is stored under.
func treePath(p string) string {
	return strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
}

// CheckRoots refuses roots that are relative, or that repeat or lie
// inside one another: their nodes would be stored twice, and exclude
// patterns relative to a root would mean two things at once.
func CheckRoots(paths []string) error {
	if len(paths) == 0 {
		return fmt.Errorf("no paths to back up: %w", ErrPaths)
	}
	roots := make([]string, 0, len(paths))
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("path %q is not absolute: %w", p, ErrPaths)
		}
		roots = append(roots, filepath.Clean(p))
	}
	sort.Strings(roots)
	for i := 1; i < len(roots); i++ {
		// After sorting, a root inside another need not follow it
		// directly ("/a", "/a.b", "/a/c"), so compare with every earlier
		// root that could hold it.
		for j := 0; j < i; j++ {
			a, b := roots[j], roots[i]
			switch {
			case a == b:
				return fmt.Errorf("path %s is listed twice: %w", a, ErrPaths)
			case a == "/" || strings.HasPrefix(b, a+"/"):
				return fmt.Errorf("path %s lies inside %s: list only %s (with exclude patterns for what to leave out): %w", b, a, a, ErrPaths)
			}
		}
	}
	return nil
}

// nodeMode keeps the bits a tree node records: permissions and setuid,
// setgid, sticky; never the file type.
func nodeMode(m fs.FileMode) fs.FileMode {
	return m & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
}

// nodeFor fills a node's metadata from what lstat or fstat returned.
func nodeFor(path string, fi fs.FileInfo) *repo.Node {
	n := &repo.Node{Path: path, Mode: nodeMode(fi.Mode()), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		n.UID, n.GID = st.Uid, st.Gid
	}
	switch {
	case fi.IsDir():
		n.Type = repo.NodeDir
	case fi.Mode()&fs.ModeSymlink != 0:
		n.Type = repo.NodeSymlink
	default:
		n.Type = repo.NodeFile
	}
	return n
}

// special names the kinds of file a backup skips.
func special(m fs.FileMode) string {
	switch {
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m.IsRegular(), m.IsDir(), m&fs.ModeSymlink != 0:
		return ""
	}
	return "special file"
}
