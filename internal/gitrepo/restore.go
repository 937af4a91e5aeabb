package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// ErrUnknownRepository is returned when a restore names a repository the
// snapshot does not hold.
var ErrUnknownRepository = errors.New("no such repository in the snapshot")

// ErrTargetExists is returned when a repository's target directory exists
// and is not empty: a restore never writes over a repository.
var ErrTargetExists = errors.New("a restore never writes over an existing repository")

// RestoreOptions describe a restore of a git snapshot.
type RestoreOptions struct {
	// Dir receives each repository as Dir/NAME.git (a bare repository).
	Dir string
	// Only restores the repository of this name ("web" or "web.git");
	// "" restores all.
	Only string
	// UID and GID own the restored files; -1 keeps the recorded owners.
	UID, GID int
	Workers  int
	Git      string // the git binary; "" finds git on PATH
	Log      *slog.Logger
}

// Restored is one repository a restore wrote and checked.
type Restored struct {
	Name string
	Dir  string
	Refs int
	Head string
}

// Restore writes the repositories of snap as bare repositories under
// o.Dir. Each is written under a temporary name, checked with git fsck
// and compared ref by ref with what the backup recorded, and only then
// given its name: a repository that fails the check is left under the
// temporary name, and the error says where and what differs. A target
// that exists and is not an empty directory is refused before anything
// is written.
func Restore(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, o RestoreOptions) ([]Restored, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	info, err := ParseInfo(snap)
	if err != nil {
		return nil, err
	}
	repos, err := selectRepos(info, o.Only)
	if err != nil {
		return nil, err
	}
	git, err := newGitRunner(o.Git)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	for _, ri := range repos {
		if err := checkTarget(filepath.Join(dir, ri.Name+".git")); err != nil {
			return nil, err
		}
	}
	// The directory may hold other repositories and serve them: it is
	// not taken over. Each repository is written into a private (0700)
	// staging directory of its own, held open from the moment it is
	// made, checked there, and only then renamed into place.
	root, err := repo.OpenRestoreDir(dir, repo.DirOptions{Create: true})
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	defer root.Close()
	staged := map[string]*repo.RestoreDir{} // top-level tree directory -> its staging directory
	defer func() {
		for _, d := range staged {
			d.Close()
		}
	}()
	for _, ri := range repos {
		tmp, err := root.MkdirTemp("." + ri.Name + ".git.restoring-")
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		staged[ri.Name+".git"] = tmp
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	// Every node of a chosen repository is placed by Mounts; the rest of
	// the tree (other repositories) is left out.
	skip := func(string) string { return "" }
	if _, err := r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Root: root, Target: skip, Mounts: staged,
		UID: o.UID, GID: o.GID, Workers: o.Workers}); err != nil {
		return nil, fmt.Errorf("restore: %w (partly written files are in %s)", err, strings.Join(stagedPaths(staged), ", "))
	}
	var done []Restored
	for _, ri := range repos {
		tmp, final := staged[ri.Name+".git"], filepath.Join(dir, ri.Name+".git")
		// git works in the staging directory by its descriptor, so a
		// rename of its name by another user of dir cannot point it at
		// another repository.
		if err := verify(ctx, git, tmp.ProcPath(), ri); err != nil {
			return done, fmt.Errorf("restored %s.git does not match the backup: %w; the restored files are left in %s", ri.Name, err, tmp.Path())
		}
		// An empty directory in the way was allowed by checkTarget; a
		// rename replaces it, and fails on anything else.
		if err := root.Rename(filepath.Base(tmp.Path()), ri.Name+".git"); err != nil {
			return done, fmt.Errorf("restore %s.git: %w; the checked repository is in %s", ri.Name, err, tmp.Path())
		}
		done = append(done, Restored{Name: ri.Name, Dir: final, Refs: len(ri.Refs), Head: ri.Head})
	}
	if err := root.Close(); err != nil {
		return done, err
	}
	if err := durable.SyncDir(dir); err != nil {
		return done, err
	}
	return done, nil
}

// selectRepos is the repositories a restore writes.
func selectRepos(info *Info, only string) ([]RepoInfo, error) {
	if len(info.Repositories) == 0 {
		return nil, errors.New("the snapshot holds no repository")
	}
	if only == "" {
		return info.Repositories, nil
	}
	want := strings.TrimSuffix(strings.Trim(only, "/"), ".git")
	var names []string
	for _, ri := range info.Repositories {
		if ri.Name == want {
			return []RepoInfo{ri}, nil
		}
		names = append(names, ri.Name+".git")
	}
	return nil, fmt.Errorf("%w: %s (it holds %s)", ErrUnknownRepository, only, strings.Join(names, ", "))
}

// checkTarget refuses to restore over anything but an empty directory.
func checkTarget(p string) error {
	entries, err := os.ReadDir(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		if info, serr := os.Lstat(p); serr == nil && !info.IsDir() {
			return fmt.Errorf("%s exists and is not a directory; restore elsewhere or move it away (%w)", p, ErrTargetExists)
		}
		return fmt.Errorf("restore target: %w", err)
	case len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty; restore elsewhere or move it away (%w)", p, ErrTargetExists)
	}
	return nil
}

// verify checks a restored repository: git fsck reads every object and
// follows every ref, and the refs and HEAD equal those recorded.
func verify(ctx context.Context, git *gitRunner, dir string, want RepoInfo) error {
	// The restored files may belong to another user (--owner); they are
	// what this restore wrote, so git may trust them. dir names the open
	// staging directory through /proc, which git's own check of the path
	// would not match.
	trust := []string{"-c", "safe.directory=*"}
	if _, err := git.run(ctx, dir, slices.Concat(trust, []string{"fsck", "--no-dangling", "--no-progress"})...); err != nil {
		return err
	}
	got, err := listRefs(ctx, git, dir, trust...)
	if err != nil {
		return err
	}
	if diff := diffRefs(want.Refs, got); diff != "" {
		return fmt.Errorf("refs differ from the backup: %s", diff)
	}
	head, err := readHead(ctx, git, dir, trust...)
	if err != nil {
		return err
	}
	if want.Head != "" && head != want.Head {
		return fmt.Errorf("HEAD is %s, the backup recorded %s", head, want.Head)
	}
	return nil
}

// diffRefs describes how got differs from want ("" when equal), naming at
// most a few refs.
func diffRefs(want, got []Ref) string {
	g := make(map[string]string, len(got))
	for _, r := range got {
		g[r.Name] = r.Object
	}
	var diffs []string
	for _, w := range want {
		obj, ok := g[w.Name]
		switch {
		case !ok:
			diffs = append(diffs, w.Name+" missing")
		case obj != w.Object:
			diffs = append(diffs, fmt.Sprintf("%s is %s, recorded %s", w.Name, obj, w.Object))
		}
		delete(g, w.Name)
	}
	for _, r := range got {
		if _, extra := g[r.Name]; extra {
			diffs = append(diffs, r.Name+" not recorded")
		}
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
	}
	return strings.Join(diffs, ", ")
}

func stagedPaths(m map[string]*repo.RestoreDir) []string {
	var out []string
	for _, d := range m {
		out = append(out, d.Path())
	}
	slices.Sort(out)
	return out
}
