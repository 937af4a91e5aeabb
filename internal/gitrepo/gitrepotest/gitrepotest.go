// Package gitrepotest makes git repositories for tests with the git
// command line: a source with the refs that trip up a naive backup
// (annotated and nested tags, a tag on a blob, notes, a commit reachable
// only from a tag), and the checks a restored copy must pass.
package gitrepotest

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Git runs git in dir, isolated from the user's and the system's config,
// and returns its trimmed output; a failure fails the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Lifeboat Test", "-c", "user.email=test@lifeboat.invalid",
		"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// Source makes a repository with a working tree at dir/name and returns
// its path. It has branches main and feature, a lightweight tag v1, an
// annotated tag v2, a tag of a tag (v2-approved), a tag on a blob, notes
// under refs/notes/commits, and an annotated tag "only-tag" on a commit
// no branch reaches. The first commit holds size bytes of random data, so
// that stored sizes can be compared.
func Source(t testing.TB, dir, name string, size int) string {
	t.Helper()
	src := filepath.Join(dir, name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	Git(t, src, "init", "-q", "-b", "main")
	rng := rand.New(rand.NewPCG(uint64(size), 7))
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	write(t, src, "data.bin", string(data))
	write(t, src, "README", "first\n")
	Git(t, src, "add", "-A")
	Git(t, src, "commit", "-q", "-m", "first")
	Commit(t, src, "README", "second\n")
	Git(t, src, "tag", "v1")
	Git(t, src, "switch", "-q", "-c", "feature")
	Commit(t, src, "feature.txt", "feature work\n")
	Git(t, src, "switch", "-q", "main")
	Commit(t, src, "README", "third\n")
	Git(t, src, "tag", "-a", "v2", "-m", "release 2")
	Git(t, src, "tag", "-a", "v2-approved", "v2", "-m", "approved release 2")
	Git(t, src, "notes", "add", "-m", "reviewed", "HEAD")
	blob := Git(t, src, "hash-object", "-w", "README")
	Git(t, src, "tag", "blob-tag", blob)
	// A commit only the tag keeps alive: made on a branch that is then
	// deleted.
	Git(t, src, "switch", "-q", "--orphan", "lost")
	write(t, src, "lost.txt", "only the tag reaches me\n")
	Git(t, src, "add", "lost.txt")
	Git(t, src, "commit", "-q", "-m", "reachable from a tag only")
	Git(t, src, "tag", "-a", "only-tag", "-m", "keeps the orphan")
	Git(t, src, "switch", "-q", "-f", "main")
	Git(t, src, "branch", "-q", "-D", "lost")
	return src
}

// Commit writes content to file in repo and commits it on the current
// branch.
func Commit(t testing.TB, repo, file, content string) {
	t.Helper()
	write(t, repo, file, content)
	Git(t, repo, "add", file)
	Git(t, repo, "commit", "-q", "-m", "change "+file)
}

func write(t testing.TB, dir, file, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Refs lists every ref of the repository at dir with its object, one per
// line, as git for-each-ref prints them.
func Refs(t testing.TB, dir string) string {
	t.Helper()
	return Git(t, dir, "for-each-ref", "--format=%(objectname) %(refname)")
}

// Fsck fails the test unless git fsck finds the repository at dir whole.
func Fsck(t testing.TB, dir string) {
	t.Helper()
	Git(t, dir, "fsck", "--no-dangling", "--no-progress", "--strict")
}
