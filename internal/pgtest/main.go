package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// Environment variables shared between RunMain, the re-executed test process and the helpers.
const (
	envBinDir = "LIFEBOAT_TEST_BIN_DIR"
	// envBuilt marks envBinDir as filled by an ancestor process, so that the re-executed child and fuzz
	// workers (which re-run TestMain) do not rebuild every binary.
	envBuilt = "LIFEBOAT_PGTEST_BUILT"
	// envPIDDir names a directory where Start records postmaster PIDs, so the root parent can stop
	// servers that a crashed or timed-out test process left running.
	envPIDDir = "LIFEBOAT_PGTEST_PID_DIR"
	// envTemplateDir names a directory of the root parent's for the template clusters (see
	// template.go), which it removes even when the test process crashed.
	envTemplateDir = "LIFEBOAT_PGTEST_TEMPLATE_DIR"
	// envForeignDir names the directory of root's that ForeignDir returns.
	envForeignDir = "LIFEBOAT_TEST_FOREIGN_DIR"
)

// TestUser is the unprivileged OS account RunMain switches to when the tests run as root, because
// PostgreSQL refuses to start as root.
const TestUser = "lifeboat-test"

// MainOptions configures RunMain.
type MainOptions struct {
	// Build lists main packages, as paths relative to the module root (for example "./cmd/lifeboat"),
	// that RunMain builds before the tests run; Bin returns their paths by base name.
	Build []string
}

// RunMain is called from TestMain of every package whose tests start PostgreSQL:
//
//	func TestMain(m *testing.M) {
//		os.Exit(pgtest.RunMain(m, pgtest.MainOptions{Build: []string{"./cmd/lifeboat"}}))
//	}
//
// As a normal user it builds opts.Build into a temporary directory and runs the tests.
// As root (CI runs as root, and PostgreSQL refuses to) it creates the OS user TestUser if missing,
// builds opts.Build and copies the test binary into a shared directory, re-executes the test binary
// as TestUser with the same arguments and working directory, streams its output and returns its
// exit code. When the package directory is not reachable by TestUser (a checkout in a private
// directory), the child runs in a copy of the module instead. Output files that cmd/go asks the
// test binary to write into root-owned directories (test log, coverage, profiles) are written by
// the child into the shared directory and copied back.
//
// Fuzzing (-test.fuzz) is not re-executed: it runs in this process, where helpers that need
// PostgreSQL fail with a clear message when running as root.
func RunMain(m *testing.M, opts MainOptions) int {
	args := os.Args[1:]
	if os.Geteuid() == 0 && !isFuzzing(args) {
		code, err := runAsTestUser(opts, args)
		if err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			return 1
		}
		return code
	}
	return runHere(m, opts)
}

// runHere builds the binaries unless an ancestor already did, then runs the tests in this process.
func runHere(m *testing.M, opts MainOptions) int {
	if dir := os.Getenv(envBinDir); dir != "" && os.Getenv(envBuilt) == dir {
		return withTemplates(m.Run)
	}
	dir, err := os.MkdirTemp("", "lifeboat-pgtest-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildAll(opts.Build, dir); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	// The environment is how the binary directory reaches Bin and any re-executed worker process.
	for k, v := range map[string]string{envBinDir: dir, envBuilt: dir} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: set %s: %v\n", k, err)
			return 1
		}
	}
	return withTemplates(m.Run)
}

// runAsTestUser prepares the shared directory and runs the test binary as TestUser.
func runAsTestUser(opts MainOptions, args []string) (int, error) {
	u, err := pgbin.EnsureUser(context.Background(), TestUser, "/nonexistent", "lifeboat tests (PostgreSQL refuses root)")
	if err != nil {
		return 0, err
	}
	uid, gid := u.UID, u.GID
	cwd, err := os.Getwd()
	if err != nil {
		return 0, fmt.Errorf("working directory: %w", err)
	}
	if err := checkTempDir(); err != nil {
		return 0, err
	}
	shared, err := os.MkdirTemp("", "lifeboat-pgtest-")
	if err != nil {
		return 0, fmt.Errorf("create shared dir: %w", err)
	}
	defer os.RemoveAll(shared)
	if err := os.Chmod(shared, 0o755); err != nil {
		return 0, fmt.Errorf("chmod shared dir: %w", err)
	}
	if err := buildAll(opts.Build, shared); err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("locate test binary: %w", err)
	}
	testBin := filepath.Join(shared, filepath.Base(self))
	if err := copyFile(self, testBin, 0o755); err != nil {
		return 0, fmt.Errorf("copy test binary: %w", err)
	}
	var home, scratch, pidDir, tplDir string
	for _, d := range []struct {
		p    *string
		name string
	}{{&home, "home"}, {&scratch, "out"}, {&pidDir, "pids"}, {&tplDir, "templates"}} {
		*d.p = filepath.Join(shared, d.name)
		if err := mkdirOwned(*d.p, uid, gid); err != nil {
			return 0, err
		}
	}

	// Left root's, but open to all: to the test user it is a directory
	// another user owns, as a repository of postgres's is to root.
	foreign := filepath.Join(shared, "foreign")
	if err := os.Mkdir(foreign, 0o777); err != nil {
		return 0, fmt.Errorf("create %s: %w", foreign, err)
	}
	if err := os.Chmod(foreign, 0o777); err != nil { // past the umask
		return 0, fmt.Errorf("chmod %s: %w", foreign, err)
	}

	childDir := cwd
	if reachErr := checkReachable(cwd, uid, gid); reachErr != nil {
		// A checkout under a private directory (a CI workspace made by mktemp -d, /root): run in a
		// copy of the module instead of changing permissions of directories that are not ours.
		if childDir, err = mirrorModule(cwd, filepath.Join(shared, "src")); err != nil {
			return 0, fmt.Errorf("%v; copying the module elsewhere failed too: %w", reachErr, err)
		}
		fmt.Fprintf(os.Stderr, "pgtest: %v; running the tests in a copy at %s\n", reachErr, childDir)
	}

	childArgs, redirects := rewriteArgs(args, cwd, scratch)
	env := os.Environ()
	if gcd := os.Getenv("GOCOVERDIR"); gcd != "" {
		r := redirect{orig: gcd, child: filepath.Join(scratch, "env-gocoverdir"), dir: true}
		redirects = append(redirects, r)
		env = setEnv(env, "GOCOVERDIR", r.child)
	}
	for _, r := range redirects {
		if err := r.prepare(uid, gid); err != nil {
			return 0, err
		}
	}
	for k, v := range map[string]string{
		"HOME": home, "USER": TestUser, "LOGNAME": TestUser,
		envBinDir: shared, envBuilt: shared, envPIDDir: pidDir, envTemplateDir: tplDir, envForeignDir: foreign,
	} {
		env = setEnv(env, k, v)
	}

	code, runErr := runChild(testBin, childArgs, childDir, env, u)
	reapServers(pidDir, uid)
	var copyErrs []error
	for _, r := range redirects {
		if err := r.copyBack(); err != nil {
			copyErrs = append(copyErrs, err)
		}
	}
	if runErr != nil {
		return 0, runErr
	}
	if err := errors.Join(copyErrs...); err != nil {
		return 0, err
	}
	return code, nil
}

// runChild starts the copied test binary as u and waits for it, forwarding signals so that
// Ctrl-C and the SIGQUIT cmd/go sends on timeout reach the process that runs the tests.
func runChild(bin string, args []string, dir string, env []string, u *pgbin.User) (int, error) {
	attr, err := childSysProcAttr(u)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = attr

	// The parent-death signal is tied to the OS thread that forked the child; keep this goroutine on
	// one thread so the child is not killed early when the runtime retires a thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start tests as %s (the package directory %s and %s must be readable by that user): %w",
			TestUser, dir, bin, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	if err == nil {
		return 0, nil
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return 0, fmt.Errorf("wait for tests: %w", err)
	}
	if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		fmt.Fprintf(os.Stderr, "pgtest: test process killed by signal %v\n", ws.Signal())
		return 128 + int(ws.Signal()), nil
	}
	return exitErr.ExitCode(), nil
}

// checkTempDir fails early when TMPDIR is private to root: the child needs to reach the shared
// directory and create its own temporary directories there.
func checkTempDir() error {
	dir := os.TempDir()
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	if fi.Mode().Perm()&0o003 != 0o003 {
		return fmt.Errorf("temp dir %s (mode %v) must be writable by %s; unset TMPDIR or use a world-writable sticky dir like /tmp",
			dir, fi.Mode().Perm(), TestUser)
	}
	return nil
}

// checkReachable reports, before anything is built, a package directory the test user cannot
// enter, such as a checkout under /root: the child runs there to find its testdata.
func checkReachable(dir string, uid, gid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		need := fs.FileMode(0o001)
		if d == dir {
			need = 0o005 // the package directory itself is also listed (testdata, golden files)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			switch {
			case int(st.Uid) == uid:
				need <<= 6
			case int(st.Gid) == gid:
				need <<= 3
			}
		}
		if fi.Mode().Perm()&need != need {
			return fmt.Errorf("tests run as %s, which cannot enter %s (mode %v)", TestUser, d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// mirrorModule copies the module holding pkgDir, without .git, to dst with files readable by all,
// and returns the copy of pkgDir.
func mirrorModule(pkgDir, dst string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(root, pkgDir)
	if err != nil {
		return "", fmt.Errorf("locate %s in module %s: %w", pkgDir, root, err)
	}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		r, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, r)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("read link %s: %w", p, err)
			}
			if err := os.Symlink(link, target); err != nil {
				return fmt.Errorf("create link %s: %w", target, err)
			}
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return fmt.Errorf("stat %s: %w", p, err)
			}
			perm := fs.FileMode(0o644)
			if fi.Mode().Perm()&0o100 != 0 {
				perm = 0o755
			}
			return copyFile(p, target, perm)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("copy module %s: %w", root, err)
	}
	return filepath.Join(dst, rel), nil
}

// Bin returns the path of a binary that RunMain built from MainOptions.Build, by base name
// (for example "lifeboat"). It fails the test when the binary is absent.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv(envBinDir)
	if dir == "" {
		t.Fatalf("pgtest.Bin(%q): %s is not set; call pgtest.RunMain from TestMain", name, envBinDir)
	}
	p := filepath.Join(dir, name)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("pgtest.Bin(%q): %v; list its package in MainOptions.Build of TestMain", name, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("pgtest.Bin(%q): %s is not an executable file", name, p)
	}
	return p
}

// ForeignDir returns an empty directory that root owns and everyone may
// write into, which RunMain makes when the tests start as root: to the
// test user (TestUser), a repository there belongs to another OS user.
// There is one per test process: a test that uses it must leave it empty
// and is the only one in its package to use it. Without one (the tests
// started as a normal user) the test is skipped, or fails where skipping
// is not allowed.
func ForeignDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(envForeignDir)
	if dir == "" {
		testenv.SkipOrFail(t, "pgtest", "no directory of another OS user to test with: run the tests as root (sudo go test), then RunMain makes one owned by root")
		return ""
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatalf("pgtest: %s: %v", envForeignDir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || !fi.IsDir() || int(st.Uid) == os.Geteuid() {
		t.Fatalf("pgtest: %s=%s is not a directory of another user", envForeignDir, dir)
	}
	return dir
}

// buildAll builds each package (relative to the module root) into dir, named after its last element.
func buildAll(pkgs []string, dir string) error {
	if len(pkgs) == 0 {
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("find go toolchain to build %v: %w", pkgs, err)
	}
	for _, pkg := range pkgs {
		out := filepath.Join(dir, path.Base(filepath.ToSlash(pkg)))
		// No VCS stamp: git refuses to read a checkout owned by another user, which is the case
		// when a normal user runs the tests in a root-owned tree.
		cmd := exec.Command(goBin, "build", "-buildvcs=false", "-o", out, pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
		}
	}
	return nil
}

// moduleRoot walks up from the working directory (the package under test) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

func mkdirOwned(p string, uid, gid int) error {
	if err := os.MkdirAll(p, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

func setEnv(env []string, key, value string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	// OpenFile's perm is filtered by the umask; the copy must be exactly perm to be runnable by others.
	if err := os.Chmod(dst, perm); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	return nil
}
