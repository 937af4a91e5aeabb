package gitrepo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// Info is what a git snapshot records about its repositories, in
// Snapshot.Extra: restore checks the restored refs against it.
type Info struct {
	Repositories []RepoInfo `json:"repositories"`
}

// RepoInfo describes one repository of a snapshot.
type RepoInfo struct {
	Name   string `json:"name"`   // stored as Name.git
	Remote string `json:"remote"` // where it came from, credentials redacted
	// Head is what HEAD points to: a ref name, or an object id when the
	// remote's HEAD is detached.
	Head  string `json:"head,omitempty"`
	Refs  []Ref  `json:"refs"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Ref is one ref and the object it names.
type Ref struct {
	Name   string `json:"name"`
	Object string `json:"object"`
}

// ParseInfo reads the Info of a git snapshot.
func ParseInfo(snap *repo.Snapshot) (*Info, error) {
	var info Info
	if len(snap.Extra) == 0 {
		return nil, fmt.Errorf("snapshot %s records no git repositories", snap.ID.Short())
	}
	if err := json.Unmarshal(snap.Extra, &info); err != nil {
		return nil, fmt.Errorf("snapshot %s: git details: %w", snap.ID.Short(), err)
	}
	return &info, nil
}

// BackupOptions describe a backup of a git asset.
type BackupOptions struct {
	Asset   string
	Remotes []Remote // from LoadRemotes
	// MirrorDir keeps one bare mirror per remote between runs (under the
	// policy's state_dir), so each run fetches only what is new. Losing
	// it costs one full fetch, nothing else.
	MirrorDir string
	// Workers is how many remotes are fetched and checked at once; 0
	// means 4.
	Workers  int
	LockWait time.Duration
	Git      string // the git binary; "" finds git on PATH
	Log      *slog.Logger
}

// Backup brings each remote's mirror up to date, checks it with git fsck,
// records its refs, and stores the mirrors as one snapshot. When any
// remote fails, nothing is recorded and the error names every remote that
// failed.
func Backup(ctx context.Context, r *repo.Repository, o BackupOptions) (*repo.Snapshot, error) {
	if len(o.Remotes) == 0 {
		return nil, errors.New("no remotes to back up")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	git, err := newGitRunner(o.Git)
	if err != nil {
		return nil, err
	}
	s, err := treestore.Begin(ctx, r, treestore.Options{Asset: o.Asset, Kind: string(lifeboat.KindGit), LockWait: o.LockWait, Log: o.Log})
	if err != nil {
		return nil, err
	}
	defer s.Abort()
	unlock, err := lockDir(o.MirrorDir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	mirrors := make([]*mirror, len(o.Remotes))
	for i, rm := range o.Remotes {
		mirrors[i] = &mirror{remote: rm, dir: filepath.Join(o.MirrorDir, rm.Name+".git")}
	}
	if err := updateAll(ctx, git, mirrors, o); err != nil {
		return nil, err
	}
	info := Info{}
	var nodes []storeNode
	for _, m := range mirrors {
		ns, err := m.collect()
		if err != nil {
			return nil, fmt.Errorf("remote %s (%s): %w", m.remote.Name, m.remote.Redacted(), err)
		}
		nodes = append(nodes, ns...)
		for _, n := range ns {
			if n.node.Type == repo.NodeFile {
				m.info.Files++
				m.info.Bytes += n.size
			}
		}
		info.Repositories = append(info.Repositories, m.info)
	}
	if err := storeNodes(ctx, s, nodes); err != nil {
		return nil, err
	}
	snap, err := s.Commit(ctx, "full", info)
	if err != nil {
		return nil, err
	}
	if err := pruneMirrors(o.MirrorDir, mirrors); err != nil {
		// The snapshot is recorded; an old mirror left behind only takes
		// disk space until the next run tries again.
		o.Log.Warn("remove mirrors of remotes no longer listed", "asset", o.Asset, "err", err)
	}
	return snap, nil
}

// updateAll updates every mirror, o.Workers at a time, and reports every
// remote that failed.
func updateAll(ctx context.Context, git *gitRunner, mirrors []*mirror, o BackupOptions) error {
	if err := os.MkdirAll(o.MirrorDir, 0o700); err != nil {
		return fmt.Errorf("git mirrors: %w", err)
	}
	errs := make([]error, len(mirrors))
	sem := make(chan struct{}, o.Workers)
	var wg sync.WaitGroup
	for i, m := range mirrors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			start := time.Now()
			if err := m.update(ctx, git); err != nil {
				errs[i] = fmt.Errorf("remote %s (%s): %w", m.remote.Name, m.remote.Redacted(), err)
				return
			}
			o.Log.Info("git mirror updated", "asset", o.Asset, "repository", m.remote.Name,
				"refs", len(m.info.Refs), "took", time.Since(start).Round(time.Millisecond))
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var failed []string
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err.Error())
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return errors.New(failed[0])
	}
	return fmt.Errorf("%d of %d remotes failed: %s", len(failed), len(mirrors), strings.Join(failed, "; "))
}

// mirror is the bare mirror of one remote.
type mirror struct {
	remote Remote
	dir    string
	info   RepoInfo
}

// markerFile, inside a mirror, holds the redacted remote the mirror was
// made from: a remote that changes its URL but keeps its name starts a
// new mirror instead of mixing two repositories' objects.
const markerFile = "lifeboat-remote"

// update fetches every ref of the remote into the mirror (removing refs
// the remote no longer has), packs what is new, checks the whole
// repository and records its refs.
func (m *mirror) update(ctx context.Context, git *gitRunner) error {
	if err := m.prepare(ctx, git); err != nil {
		return err
	}
	// Settings ride on the command line, not in the mirror's config: the
	// config is stored and restored as the repository's own.
	quiet := []string{"-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "fetch.writeCommitGraph=false",
		"-c", "fetch.recurseSubmodules=false"}
	remoteGit, remoteURL := git.forRemote(m.remote)
	fetch := slices.Concat(quiet, []string{"fetch", "--prune", "--no-write-fetch-head", "--quiet", "--", remoteURL, "+refs/*:refs/*"})
	if _, err := remoteGit.run(ctx, m.dir, fetch...); err != nil {
		return err
	}
	if err := m.updateHead(ctx, git); err != nil {
		return err
	}
	// Refs in one packed-refs file rather than a file each; rewritten
	// only when a fetch left loose refs, so that an unchanged repository
	// stores an unchanged tree.
	if loose, err := hasFiles(filepath.Join(m.dir, "refs")); err != nil {
		return fmt.Errorf("mirror: %w", err)
	} else if loose {
		if _, err := git.run(ctx, m.dir, "pack-refs", "--all", "--prune"); err != nil {
			return err
		}
	}
	// A geometric repack rolls the new loose objects and small packs
	// together but leaves the big packs as they are: their bytes do not
	// change from one night to the next, so they are stored once. (A full
	// repack -a would rewrite them every time new objects arrive.)
	repack := slices.Concat(quiet, []string{"-c", "repack.writeBitmaps=false", "-c", "repack.updateServerInfo=false",
		"repack", "-d", "-q", "--geometric=2"})
	if _, err := git.run(ctx, m.dir, repack...); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(m.dir, "objects", "info", "alternates")); err == nil {
		return fmt.Errorf("mirror %s borrows objects from another repository (objects/info/alternates); remove the mirror directory", m.dir)
	}
	// Every object read back and hashed, every ref resolved: a mirror that
	// rotted on disk since the last run is not stored as a good backup.
	if _, err := git.run(ctx, m.dir, "fsck", "--no-dangling", "--no-progress"); err != nil {
		return fmt.Errorf("mirror %s is damaged: %w (remove the directory and run the backup again)", m.dir, err)
	}
	refs, err := listRefs(ctx, git, m.dir)
	if err != nil {
		return err
	}
	head, err := readHead(ctx, git, m.dir)
	if err != nil {
		return err
	}
	m.info = RepoInfo{Name: m.remote.Name, Remote: m.remote.Redacted(), Head: head, Refs: refs}
	return nil
}

// prepare makes sure the mirror directory is a bare repository of this
// remote, and clears what an interrupted run left.
func (m *mirror) prepare(ctx context.Context, git *gitRunner) error {
	marker, err := os.ReadFile(filepath.Join(m.dir, markerFile))
	switch {
	case err == nil && strings.TrimSpace(string(marker)) == m.remote.Redacted():
		return clearLeftovers(m.dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("mirror: %w", err)
	}
	// No mirror yet, one of another remote, or a first fetch that never
	// finished: start afresh.
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	if _, err := git.run(ctx, filepath.Dir(m.dir), "init", "--bare", "--quiet", "--", m.dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(m.dir, markerFile), []byte(m.remote.Redacted()+"\n"), 0o600); err != nil {
		return fmt.Errorf("mirror: %w", err)
	}
	return nil
}

// clearLeftovers removes the lock files and temporary packs of a git run
// that was killed. Only lifeboat uses the mirror, and it holds the
// mirrors' lock, so none of them belongs to a live git.
func clearLeftovers(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." || !leftover(filepath.ToSlash(rel), d.Name()) {
			return nil
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("mirror: remove leftover: %w", err)
		}
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
}

// leftover reports whether the mirror's file at rel (slash-separated) is
// a lock file or a temporary file of git (a pack being written, a
// quarantine of objects being received), never part of the repository.
func leftover(rel, name string) bool {
	if strings.HasSuffix(name, ".lock") {
		return true // no ref name may end in .lock
	}
	return strings.HasPrefix(rel, "objects/") && (strings.HasPrefix(name, "tmp_") || strings.HasPrefix(name, "incoming-"))
}

// updateHead points the mirror's HEAD where the remote's points, which a
// fetch does not do: a remote that changed its default branch is restored
// with the new one.
func (m *mirror) updateHead(ctx context.Context, git *gitRunner) error {
	remoteGit, remoteURL := git.forRemote(m.remote)
	out, err := remoteGit.run(ctx, m.dir, "ls-remote", "--symref", "--", remoteURL, "HEAD")
	if err != nil {
		return err
	}
	var symref, oid string
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) == 3 && fields[0] == "ref:" && fields[2] == "HEAD":
			symref = fields[1]
		case len(fields) == 2 && fields[1] == "HEAD":
			oid = fields[0]
		}
	}
	cur, err := readHead(ctx, git, m.dir)
	if err != nil {
		return err
	}
	switch {
	case symref != "" && symref != cur:
		_, err = git.run(ctx, m.dir, "symbolic-ref", "HEAD", symref)
	case symref == "" && oid != "" && oid != cur:
		_, err = git.run(ctx, m.dir, "update-ref", "--no-deref", "HEAD", oid)
	}
	// Neither: an empty remote, or one whose HEAD names a branch not yet
	// born; the mirror keeps the HEAD it has.
	return err
}

// hasFiles reports whether there is a file anywhere below dir.
func hasFiles(dir string) (bool, error) {
	found := errors.New("found")
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return found
		}
		return nil
	})
	if err == found {
		return true, nil
	}
	return false, err
}

// listRefs is every ref of the repository in dir, sorted by name.
// pre are options given to git before the command.
func listRefs(ctx context.Context, git *gitRunner, dir string, pre ...string) ([]Ref, error) {
	out, err := git.run(ctx, dir, slices.Concat(pre, []string{"for-each-ref", "--format=%(objectname) %(refname)"})...)
	if err != nil {
		return nil, err
	}
	refs := []Ref{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		oid, name, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("git for-each-ref: unexpected line %q", line)
		}
		refs = append(refs, Ref{Name: name, Object: oid})
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	return refs, nil
}

// readHead is the ref HEAD points to, or the object id of a detached HEAD.
func readHead(ctx context.Context, git *gitRunner, dir string, pre ...string) (string, error) {
	out, err := git.run(ctx, dir, slices.Concat(pre, []string{"symbolic-ref", "-q", "HEAD"})...)
	if err == nil {
		return strings.TrimSpace(string(out)), nil
	}
	if !isExit(err, 1) {
		return "", err
	}
	out, err = git.run(ctx, dir, slices.Concat(pre, []string{"rev-parse", "--verify", "-q", "HEAD"})...)
	if err != nil {
		return "", fmt.Errorf("HEAD is neither a ref nor an object: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// storeNode is a node of the snapshot's tree and the file it is read from.
type storeNode struct {
	node *repo.Node
	src  string
	size int64
}

// topFiles are the files at the top of a bare repository that belong to
// it; the rest (hooks, description, info/, the marker) is either a
// sample, derived, or lifeboat's own.
var topFiles = []string{"HEAD", "config", "packed-refs", "shallow"}

// collect lists the mirror's files that make up the repository: HEAD,
// config, packed-refs, refs/ and objects/, without lock files and
// temporary packs.
func (m *mirror) collect() ([]storeNode, error) {
	top := m.remote.Name + ".git"
	var out []storeNode
	add := func(p, rel string, info fs.FileInfo) error {
		n := &repo.Node{Path: top, Mode: info.Mode().Perm(), MTime: info.ModTime().UnixNano()}
		if rel != "" {
			n.Path += "/" + filepath.ToSlash(rel)
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n.UID, n.GID = st.Uid, st.Gid
		}
		switch {
		case info.Mode().IsRegular():
			n.Type = repo.NodeFile
		case info.IsDir():
			n.Type = repo.NodeDir
		default:
			return fmt.Errorf("%s: not a file or directory (%s)", p, info.Mode().Type())
		}
		out = append(out, storeNode{node: n, src: p, size: info.Size()})
		return nil
	}
	info, err := os.Lstat(m.dir)
	if err != nil {
		return nil, err
	}
	if err := add(m.dir, "", info); err != nil {
		return nil, err
	}
	for _, name := range topFiles {
		p := filepath.Join(m.dir, name)
		info, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := add(p, name, info); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"refs", "objects"} {
		err := filepath.WalkDir(filepath.Join(m.dir, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(m.dir, p)
			// objects/info/packs serves dumb HTTP clients and is rebuilt by
			// git update-server-info; a stale copy would mislead them.
			if leftover(filepath.ToSlash(rel), d.Name()) || filepath.ToSlash(rel) == "objects/info/packs" {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return add(p, rel, info)
		})
		if err != nil {
			return nil, fmt.Errorf("read mirror: %w", err)
		}
	}
	return out, nil
}

// storeNodes stores the nodes of every repository in the tree's order.
func storeNodes(ctx context.Context, s *treestore.Session, nodes []storeNode) error {
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].node.Path < nodes[j].node.Path })
	for _, n := range nodes {
		if n.node.Type != repo.NodeFile {
			if err := s.Add(ctx, n.node, nil); err != nil {
				return err
			}
			continue
		}
		f, err := os.Open(n.src)
		if err != nil {
			return fmt.Errorf("read mirror: %w", err)
		}
		err = s.Add(ctx, n.node, f)
		f.Close()
		if err != nil {
			return err
		}
		if n.node.Size != n.size {
			// Only lifeboat writes the mirrors; a file that changed size
			// while read means something else does.
			return fmt.Errorf("%s changed while it was stored (%d bytes, then %d)", n.src, n.size, n.node.Size)
		}
	}
	return nil
}

// pruneMirrors removes the mirrors of remotes no longer listed.
func pruneMirrors(dir string, keep []*mirror) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	kept := map[string]bool{}
	for _, m := range keep {
		kept[filepath.Base(m.dir)] = true
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || kept[e.Name()] || !strings.HasSuffix(e.Name(), ".git") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(p, markerFile)); err != nil {
			continue // not one of ours
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lockDir takes an exclusive lock on dir (created if missing) for as long
// as the mirrors in it are used: the repository lock already keeps two
// backups of an asset apart, but not two policies that share a state_dir.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("git mirrors: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("git mirrors: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("git mirrors in %s are in use by another lifeboat process", dir)
		}
		return nil, fmt.Errorf("lock git mirrors in %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
