package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgtest"
)

// newFilesEnv is a policy with one files asset, app-config, backing up
// the given roots, and a file repository for it.
func newFilesEnv(t *testing.T, paths []string, exclude []string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, bin: pgtest.Bin(t, "lifeboat"), dir: dir, policy: filepath.Join(dir, "lifeboat.yaml"), repo: filepath.Join(dir, "repo")}
	quoted := func(list []string) string {
		var q []string
		for _, s := range list {
			q = append(q, fmt.Sprintf("%q", s))
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	policy := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: app-config
    kind: files
    paths: %s
    exclude: %s
    repositories: [primary]
`, filepath.Join(dir, "state"), e.repo, filepath.Join(dir, "repo.key"), quoted(paths), quoted(exclude))
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init")
	return e
}

func writeFile(t *testing.T, path, content string, mode os.FileMode, mtime time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// filesState lists a tree as a round trip must keep it: per path the
// type and mode, modification time, symlink target and content hash.
func filesState(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %v %d", rel, fi.Mode(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

var filesSnapshotLine = regexp.MustCompile(`^snapshot ([0-9a-f]{8}) of app-config \(files\): (\d+) files`)

func (e *env) filesBackup() string {
	e.t.Helper()
	out := e.mustRun("backup", "app-config")
	m := filesSnapshotLine.FindStringSubmatch(out)
	if m == nil {
		e.t.Fatalf("backup printed %q", out)
	}
	return m[1]
}

func TestFilesBackupRestoreDiff(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	etc, srv := filepath.Join(src, "etc", "drop"), filepath.Join(src, "srv", "drop", "config")
	old := time.Date(2025, 6, 1, 3, 0, 0, 987654321, time.UTC)
	writeFile(t, filepath.Join(etc, "app.conf"), "# drop\nlisten = 8080\nworkers = 4\nlog = info\n", 0o644, old)
	writeFile(t, filepath.Join(etc, "secret.key"), "k\n", 0o600, old)
	writeFile(t, filepath.Join(etc, "hooks", "deploy.sh"), "#!/bin/sh\n", 0o644, old)
	writeFile(t, filepath.Join(etc, "empty"), "", 0o644, old)
	writeFile(t, filepath.Join(etc, "scratch.tmp"), "excluded\n", 0o644, old)
	writeFile(t, filepath.Join(etc, "nested", "a", "b", "c.conf"), "deep\n", 0o640, old)
	writeFile(t, filepath.Join(etc, "name with spaces – ünïcödé.conf"), "spaces\n", 0o644, old)
	writeFile(t, filepath.Join(etc, "old.conf"), "to be removed\n", 0o644, old)
	big := make([]byte, 4<<20+17)
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	writeFile(t, filepath.Join(srv, "assets.bin"), string(big), 0o644, old)
	if err := os.Symlink("hooks/deploy.sh", filepath.Join(etc, "deploy")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(etc, "nested", "a", "b"), filepath.Join(etc, "nested", "a"), filepath.Join(etc, "nested"), filepath.Join(etc, "hooks")} {
		os.Chtimes(d, old, old)
	}
	e := newFilesEnv(t, []string{etc, srv}, []string{"*.tmp"})
	first := e.filesBackup()

	// The whole tree comes back byte for byte, without what was excluded.
	out := filepath.Join(t.TempDir(), "restored")
	r := e.run("restore", "app-config", "--to", out)
	if r.code != 0 || !strings.Contains(r.stdout, "restored snapshot "+first) {
		t.Fatalf("restore: %+v", r)
	}
	for _, root := range []string{etc, srv} {
		want := regexp.MustCompile(`(?m)^scratch\.tmp .*\n`).ReplaceAllString(filesState(t, root), "")
		if got := filesState(t, filepath.Join(out, root)); got != want {
			t.Errorf("restored %s:\n%s\nwant:\n%s", root, got, want)
		}
	}

	// Edit a config file, add and remove files, change a mode.
	writeFile(t, filepath.Join(etc, "app.conf"), "# drop\nlisten = 9090\nworkers = 4\nlog = info\n", 0o644, old)
	writeFile(t, filepath.Join(etc, "conf.d", "new.conf"), "feature = on\n", 0o644, old)
	os.Remove(filepath.Join(etc, "old.conf"))
	os.Chmod(filepath.Join(etc, "hooks", "deploy.sh"), 0o755)
	second := e.filesBackup()

	d := e.mustRun("diff", first, second)
	for _, want := range []string{
		"asset app-config: snapshot " + first,
		fmt.Sprintf("M %s/app.conf (content, 44 B -> 44 B)\n", etc),
		fmt.Sprintf("+ %s/conf.d/\n", etc),
		fmt.Sprintf("+ %s/conf.d/new.conf\n", etc),
		fmt.Sprintf("- %s/old.conf\n", etc),
		fmt.Sprintf("M %s/hooks/deploy.sh (mode 0644 -> 0755)\n", etc),
		"2 added, 1 removed, 2 changed\n",
		fmt.Sprintf("--- a%[1]s/app.conf\n+++ b%[1]s/app.conf\n@@ -1,4 +1,4 @@\n # drop\n-listen = 8080\n+listen = 9090\n workers = 4\n log = info\n", etc),
		fmt.Sprintf("--- /dev/null\n+++ b%s/conf.d/new.conf\n@@ -0,0 +1 @@\n+feature = on\n", etc),
	} {
		if !strings.Contains(d, want) {
			t.Errorf("diff lacks %q:\n%s", want, d)
		}
	}
	// The directory etc/drop itself changed (entries came and went), but
	// only its time: not a change.
	if strings.Contains(d, "M "+etc+"/\n") || strings.Contains(d, "scratch.tmp") {
		t.Errorf("diff:\n%s", d)
	}
	var res struct {
		Asset   string
		From    string
		Changes []struct {
			Path, Status string
			What         []string
			Diff         string `json:"diff"`
		}
	}
	if err := json.Unmarshal([]byte(e.mustRun("diff", first, second, "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.Asset != "app-config" || !strings.HasPrefix(res.From, first) || len(res.Changes) != 5 {
		t.Errorf("diff --json: %+v", res)
	}

	// One file restored, from the first snapshot.
	one := t.TempDir()
	r = e.run("restore", "app-config", "--snapshot", first, "--to", one, "--path", filepath.Join(etc, "app.conf"))
	if r.code != 0 || !strings.Contains(r.stdout, filepath.Join(etc, "app.conf")+" is at "+filepath.Join(one, etc, "app.conf")) {
		t.Fatalf("restore --path: %+v", r)
	}
	if data, err := os.ReadFile(filepath.Join(one, etc, "app.conf")); err != nil || !strings.Contains(string(data), "listen = 8080") {
		t.Errorf("restored app.conf: %q %v", data, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(one, etc)); len(entries) != 1 {
		t.Errorf("restore --path wrote %d entries", len(entries))
	}

	// Mistakes: one clear line each.
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"restore", "app-config", "--to", one}, 1, "is not empty: restore into an empty directory, or use --delta"},
		{[]string{"restore", "app-config", "--to", t.TempDir(), "--path", etc + "/nope"}, 2, etc + "/nope is not in snapshot " + second},
		{[]string{"restore", "app-config", "--to", t.TempDir(), "--path", "etc/drop"}, 2, "--path \"etc/drop\": give the path as it was backed up, absolute"},
		{[]string{"restore", "app-config"}, 2, "restore of a files asset needs --to DIR"},
		{[]string{"diff", first, "ffffffff"}, 1, `no snapshot "ffffffff"`},
		{[]string{"diff", first}, 2, "diff takes SNAPSHOT_A SNAPSHOT_B"},
	} {
		r := e.run(tc.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != tc.code || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and one line with %q", tc.args, r.code, r.stderr, tc.code, tc.want)
		}
	}
}

func TestFilesUnreadableFailsBackup(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Fatal("running as root, where permissions do not stop reads")
	}
	src := filepath.Join(t.TempDir(), "cfg")
	writeFile(t, filepath.Join(src, "a.conf"), "a\n", 0o644, time.Now())
	writeFile(t, filepath.Join(src, "private", "locked.key"), "k\n", 0o000, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	r := e.run("backup", "app-config")
	want := fmt.Sprintf("lifeboat: backup app-config: cannot read %s: permission denied; run the backup as a user who can read it, or exclude it\n",
		filepath.Join(src, "private", "locked.key"))
	if r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant   %q", r.code, r.stdout, r.stderr, want)
	}
	if s := e.mustRun("snapshots", "app-config", "--json"); strings.TrimSpace(s) != "[]" {
		t.Errorf("a snapshot was recorded: %s", s)
	}
	// A socket is skipped with a warning, and the backup succeeds.
	os.Chmod(filepath.Join(src, "private", "locked.key"), 0o600)
	if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.run("backup", "app-config")
	if r.code != 0 || !strings.Contains(r.stderr, "warning: 1 sockets, pipes or devices skipped") {
		t.Fatalf("backup with a named pipe: %+v", r)
	}
}
