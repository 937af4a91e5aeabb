package app

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// otherUser is an existing user this test does not run as.
func otherUser(t *testing.T) *user.User {
	name := "root"
	if os.Geteuid() == 0 {
		name = "nobody"
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// foreignDir is a directory owned by u: made and given away as root, or
// an existing root-owned one otherwise.
func foreignDir(t *testing.T, u *user.User) string {
	if os.Geteuid() != 0 {
		return "/" // root's, and u is root
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, atoi(t, u.Uid), atoi(t, u.Gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

type runAsCase struct {
	name     string
	p        policy.Policy
	asOwner  bool
	wantErr  string // "" for no error
	wantUser string // the user to become, "" for none
}

func TestRunAs(t *testing.T) {
	t.Parallel()
	other := otherUser(t)
	mine := t.TempDir()
	cases := []runAsCase{
		{name: "nobody named", p: policy.Policy{StateDir: mine}},
		{name: "missing state_dir", p: policy.Policy{StateDir: filepath.Join(mine, "absent")}},
		{name: "policy names another user", p: policy.Policy{Source: "p.yaml", User: other.Username, StateDir: filepath.Join(mine, "absent")},
			wantErr: "the policy p.yaml says Lifeboat runs as " + other.Username + " (user), but this runs as"},
		{name: "state_dir of another user", p: policy.Policy{StateDir: foreignDir(t, other)},
			wantErr: "belongs to " + other.Username + ", but this runs as"},
		{name: "unknown user", p: policy.Policy{Source: "p.yaml", User: "no-such-user-here", StateDir: mine},
			wantErr: "p.yaml: user no-such-user-here: no such user on this host"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases,
			runAsCase{name: "root with --as-owner becomes the policy's user", p: policy.Policy{User: other.Username, StateDir: mine + "/absent"}, asOwner: true, wantUser: other.Username},
			runAsCase{name: "state_dir of another user than the policy's", p: policy.Policy{Source: "p.yaml", User: other.Username, StateDir: mine},
				wantErr: "belongs to root, but the policy p.yaml says Lifeboat runs as " + other.Username + ": give it to " + other.Username},
		)
	} else {
		cases = append(cases, runAsCase{name: "--as-owner is root's alone", p: policy.Policy{User: other.Username, StateDir: mine + "/absent"}, asOwner: true,
			wantErr: "--as-owner lets only root act on its behalf"})
	}
	for _, c := range cases {
		u, err := RunAs(&c.p, c.asOwner)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrWrongUser) {
				t.Errorf("%s: got %v, want an ErrWrongUser saying %q", c.name, err, c.wantErr)
			}
			if err != nil && strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("%s: not one line: %q", c.name, err)
			}
			if err != nil && !strings.Contains(c.wantErr, "--as-owner lets") && !strings.Contains(c.wantErr, "no such user") &&
				!strings.Contains(c.wantErr, "give it to") && !strings.Contains(err.Error(), "runuser -u "+other.Username+" -- lifeboat") {
				t.Errorf("%s: the refusal does not say how to run as %s: %v", c.name, other.Username, err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantUser == "" && u != nil:
			t.Errorf("%s: would become %s", c.name, u.Username)
		case c.wantUser != "" && (u == nil || u.Username != c.wantUser):
			t.Errorf("%s: would become %v, want %s", c.name, u, c.wantUser)
		}
	}
}

// TestBecome runs Become in a child process (it cannot be undone) and
// checks that what the child writes belongs to the user it became.
func TestBecome(t *testing.T) {
	if dir := os.Getenv("LIFEBOAT_TEST_BECOME_DIR"); dir != "" {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		if err := Become(u); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "made"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if os.Getenv("HOME") != u.HomeDir {
			t.Fatalf("HOME is %q, want %q", os.Getenv("HOME"), u.HomeDir)
		}
		return
	}
	t.Parallel()
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "app", "Become needs root")
	}
	// Not under t.TempDir, whose 0700 parent nobody could not cross.
	dir, err := os.MkdirTemp("", "lifeboat-become-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBecome$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LIFEBOAT_TEST_BECOME_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	fi, err := os.Stat(filepath.Join(dir, "made"))
	if err != nil {
		t.Fatal(err)
	}
	nobody, _ := user.Lookup("nobody")
	if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != atoi(t, nobody.Uid) {
		t.Fatalf("the file is owned by uid %d, want nobody (%s)", st.Uid, nobody.Uid)
	}
}
