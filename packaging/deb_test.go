package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// TestDebianPackage builds the package as `make deb` does (scripts/release.sh
// deb), reads its control data, extracts it into a throwaway root and runs
// the installed binary, which must print the version and commit of this
// checkout; as root it also installs, reinstalls and purges the package with
// dpkg into another throwaway root, running the maintainer scripts.
func TestDebianPackage(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"dpkg", "dpkg-deb", "git"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.SkipOrFail(t, "packaging", p+" is not installed (scripts/install-test-deps.sh)")
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	script := filepath.Join("..", "scripts", "release.sh")

	// The version and commit are read once and passed to the build, so the
	// tree changing in between (a file written elsewhere) cannot make the
	// two disagree.
	vars := map[string]string{}
	for line := range strings.Lines(run(ctx, t, nil, script, "version")) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		vars[k] = v
	}
	version, commit := vars["VERSION"], vars["COMMIT"]
	head := strings.TrimSpace(run(ctx, t, nil, "git", "-c", "safe.directory=*", "rev-parse", "HEAD"))
	if commit != head {
		t.Fatalf("release.sh version says COMMIT=%q; git rev-parse HEAD says %q", commit, head)
	}
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(version) {
		t.Fatalf("release.sh version says VERSION=%q, not a Debian version", version)
	}

	out := t.TempDir()
	deb := strings.TrimSpace(run(ctx, t, []string{"VERSION=" + version, "COMMIT=" + commit}, script, "deb", out))
	if filepath.Dir(deb) != out || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("release.sh deb printed %q; want a .deb in %s", deb, out)
	}

	fields := map[string]string{}
	for _, f := range []string{"Package", "Version", "Architecture", "Recommends"} {
		fields[f] = strings.TrimSpace(run(ctx, t, nil, "dpkg-deb", "--field", deb, f))
	}
	goarch := strings.TrimSpace(run(ctx, t, nil, "go", "env", "GOARCH"))
	want := map[string]string{"Package": "lifeboat", "Version": version, "Architecture": goarch, "Recommends": "postgresql-client"}
	for f, w := range want {
		if fields[f] != w {
			t.Errorf("control field %s = %q, want %q", f, fields[f], w)
		}
	}

	// The listing: path → "mode owner".
	listing := map[string]string{}
	for line := range strings.Lines(run(ctx, t, nil, "dpkg-deb", "--contents", deb)) {
		f := strings.Fields(line)
		if len(f) >= 6 {
			listing[strings.TrimPrefix(f[5], ".")] = f[0] + " " + f[1]
		}
	}
	for path, modeOwner := range map[string]string{
		"/usr/bin/lifeboat":                        "-rwxr-xr-x root/root",
		"/usr/bin/lifeboat-walpush":                "-rwxr-xr-x root/root",
		"/usr/lib/systemd/system/lifeboat.service": "-rw-r--r-- root/root",
		"/etc/lifeboat/lifeboat.yaml.example":      "-rw-r--r-- root/root",
		"/usr/share/doc/lifeboat/daemon.md":        "-rw-r--r-- root/root",
		"/usr/share/doc/lifeboat/README.md":        "-rw-r--r-- root/root",
	} {
		if got, ok := listing[path]; !ok {
			t.Errorf("the package has no %s", path)
		} else if got != modeOwner {
			t.Errorf("%s is %q in the package, want %q", path, got, modeOwner)
		}
	}

	control := filepath.Join(t.TempDir(), "DEBIAN")
	run(ctx, t, nil, "dpkg-deb", "--control", deb, control)
	if b, err := os.ReadFile(filepath.Join(control, "conffiles")); err != nil || strings.TrimSpace(string(b)) != "/etc/lifeboat/lifeboat.yaml.example" {
		t.Errorf("conffiles = %q (%v), want the example policy alone", b, err)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(control, s)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("maintainer script %s: missing or not executable (%v)", s, err)
		}
	}

	// dpkg -x: files only, no scripts, any user.
	extracted := t.TempDir()
	run(ctx, t, nil, "dpkg", "-x", deb, extracted)
	got := run(ctx, t, nil, filepath.Join(extracted, "usr/bin/lifeboat"), "version")
	if wantPrefix := "lifeboat version " + version + " (commit " + commit + ","; !strings.HasPrefix(got, wantPrefix) {
		t.Errorf("installed lifeboat version printed %q, want it to start with %q", got, wantPrefix)
	}
	unit, err := os.ReadFile(filepath.Join(extracted, "usr/lib/systemd/system/lifeboat.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^ExecStart=/usr/bin/lifeboat serve `).Match(unit) {
		t.Errorf("the packaged unit does not start /usr/bin/lifeboat serve:\n%s", unit)
	}
	if !bytes.Contains(unit, []byte("\nUser=postgres\n")) {
		t.Errorf("the packaged unit does not run as postgres:\n%s", unit)
	}
	if _, err := app.LoadPolicy(filepath.Join(extracted, "etc/lifeboat/lifeboat.yaml.example"), app.Kinds()); err != nil {
		t.Errorf("the example policy does not load:\n%v", err)
	}

	t.Run("dpkg --root", func(t *testing.T) {
		if os.Geteuid() != 0 {
			testenv.SkipOrFail(t, "packaging", "installing with dpkg --root runs the maintainer scripts, which chown: needs root")
		}
		installIntoRoot(ctx, t, deb, version)
	})
}

// installIntoRoot installs deb into an empty root with its own dpkg
// database, the maintainer scripts run outside a chroot with DPKG_ROOT set,
// then reinstalls it (an upgrade's path) and purges it.
func installIntoRoot(ctx context.Context, t *testing.T, deb, version string) {
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	dpkg := func(args ...string) string {
		return run(ctx, t, nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--log=/dev/null"}, args...)...)
	}
	dpkg("--install", deb)
	if st := dpkg("--status", "lifeboat"); !strings.Contains(st, "Status: install ok installed") || !strings.Contains(st, "Version: "+version+"\n") {
		t.Fatalf("dpkg --status after install:\n%s", st)
	}

	// postinst: both directories exist, private, and belong to postgres when
	// there is one (there is wherever the test dependencies are installed).
	var uid int
	pg, err := user.Lookup("postgres")
	if err == nil {
		if uid, err = strconv.Atoi(pg.Uid); err != nil {
			t.Fatal(err)
		}
	}
	checkDir := func(rel string, mode os.FileMode) {
		t.Helper()
		fi, err := os.Stat(filepath.Join(root, rel))
		if err != nil {
			t.Errorf("after install: %v", err)
			return
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("/%s has mode %v, want %v", rel, fi.Mode().Perm(), mode)
		}
		if pg != nil {
			if owner := int(fi.Sys().(*syscall.Stat_t).Uid); owner != uid {
				t.Errorf("/%s belongs to uid %d, want postgres (%d)", rel, owner, uid)
			}
		}
	}
	checkDir("var/lib/lifeboat", 0o700)
	checkDir("etc/lifeboat", 0o750)

	// What the operator created is theirs: a reinstall keeps the ownership
	// the postinst gave, and a purge removes neither the key file nor the
	// state directory.
	key := filepath.Join(root, "etc/lifeboat/repo.key")
	if err := os.WriteFile(key, []byte("0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dpkg("--install", deb)
	checkDir("etc/lifeboat", 0o750)
	dpkg("--purge", "lifeboat")
	if _, err := os.Stat(key); err != nil {
		t.Errorf("the purge removed the operator's key file: %v", err)
	}
	checkDir("var/lib/lifeboat", 0o700)
	for _, gone := range []string{"usr/bin/lifeboat", "etc/lifeboat/lifeboat.yaml.example"} {
		if _, err := os.Stat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("/%s is still there after the purge (%v)", gone, err)
		}
	}
}

// run runs a program with extra environment variables and returns its
// standard output; a failure ends the test with its standard error.
func run(ctx context.Context, t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("%s %s (%.1fs)", filepath.Base(name), strings.Join(args, " "), time.Since(start).Seconds())
	return stdout.String()
}

// TestReleaseVersions: the versions release.sh derives from git sort as
// dpkg sorts them, in the order the commits were made.
func TestReleaseVersions(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"dpkg", "git"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.SkipOrFail(t, "packaging", p+" is not installed (scripts/install-test-deps.sh)")
		}
	}
	ctx := t.Context()
	dir := t.TempDir()
	script, err := os.ReadFile(filepath.Join("..", "scripts", "release.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "scripts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts", "release.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_GLOBAL=/dev/null"}
	day := 0
	git := func(args ...string) string {
		// Each commit a day after the previous one: the untagged versions
		// are ordered by commit time.
		e := append(env, fmt.Sprintf("GIT_COMMITTER_DATE=2026-01-%02dT12:00:00Z", day), fmt.Sprintf("GIT_AUTHOR_DATE=2026-01-%02dT12:00:00Z", day))
		return strings.TrimSpace(run(ctx, t, e, "git", append([]string{"-C", dir}, args...)...))
	}
	versionOf := func() string {
		out := run(ctx, t, []string{"VERSION=", "COMMIT="}, filepath.Join(dir, "scripts", "release.sh"), "version")
		v, _, _ := strings.Cut(strings.TrimPrefix(out, "VERSION="), "\n")
		return v
	}
	commit := func() {
		day++
		git("commit", "-q", "--allow-empty", "-m", fmt.Sprint("day ", day))
	}

	git("init", "-q")
	git("add", "scripts")
	commit()
	var got []string
	record := func(wantPattern string) {
		t.Helper()
		v := versionOf()
		if !regexp.MustCompile("^" + wantPattern + "$").MatchString(v) {
			t.Errorf("version %q, want %s", v, wantPattern)
		}
		got = append(got, v)
	}
	short := func() string { return git("rev-parse", "--short=12", "HEAD") }
	record(`0\.0\.0\+20260101120000\.g` + short())
	commit()
	record(`0\.0\.0\+20260102120000\.g` + short())
	git("tag", "v1.0.0-rc1")
	record(`1\.0\.0~rc1`)
	commit()
	git("tag", "v1.0.0")
	record(`1\.0\.0`)
	commit()
	commit()
	record(`1\.0\.0\+2\.g` + short())
	if err := os.WriteFile(filepath.Join(dir, "new.go"), []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	record(`1\.0\.0\+2\.g` + short() + `\.dirty`)
	git("add", "new.go")
	commit()
	git("tag", "v1.0.1")
	record(`1\.0\.1`)

	for i := 1; i < len(got); i++ {
		if err := exec.CommandContext(ctx, "dpkg", "--compare-versions", got[i-1], "lt", got[i]).Run(); err != nil {
			t.Errorf("dpkg does not sort %s before %s (%v)", got[i-1], got[i], err)
		}
	}
}
