// Package pgbin finds PostgreSQL's programs by major version and runs
// throwaway PostgreSQL servers from them: initdb, start on a private Unix
// socket and a free port, wait until the server takes connections, connect,
// stop. Drills, the test helpers (internal/pgtest) and the benchmark harness
// all start their servers here, so they find the same binaries by the same
// rule and run them the same way, as an unprivileged OS user when the
// caller is root (PostgreSQL refuses to run as root).
package pgbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/childenv"
)

// EnvBin names the environment variable that points at a PostgreSQL bin
// directory to use before any other: a build of one's own, or one of
// several installed versions.
const EnvBin = "LIFEBOAT_PG_BIN"

// LibDir is where Debian and Ubuntu install each PostgreSQL major version's
// programs side by side, as LibDir/<major>/bin.
const LibDir = "/usr/lib/postgresql"

// ErrNotFound is what errors.Is finds in the error of a lookup that no
// PostgreSQL program fits. Other errors mean the lookup went wrong, such
// as $LIFEBOAT_PG_BIN naming a directory that does not exist.
var ErrNotFound = errors.New("PostgreSQL programs not found")

// notFoundError says what was looked for and where; it is ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// Program is one PostgreSQL program and the version it reports.
type Program struct {
	Path    string
	Version string // e.g. "15.13"
	Major   int    // e.g. 15
}

// Bin is the directory holding one PostgreSQL installation's server
// programs (postgres, initdb, pg_ctl) and, usually, its client programs.
type Bin struct {
	Dir     string
	Version string // of its postgres, e.g. "15.13"
	Major   int
}

// Path returns the path of the program called name in b.
func (b Bin) Path(name string) string { return filepath.Join(b.Dir, name) }

// Find returns the server programs of PostgreSQL major version major, or of
// any version when major is 0. A data directory is readable only by the
// major version that wrote it, so a server started on a restored one must
// be of the backup's version.
//
// The candidate directories are, in order: $LIFEBOAT_PG_BIN;
// /usr/lib/postgresql/<major>/bin (for any version: every
// /usr/lib/postgresql/*/bin, newest first); the directory of postgres on
// PATH; pg_config --bindir. The first whose postgres --version reports the
// major version wanted wins. A $LIFEBOAT_PG_BIN of another version is
// passed over (a host may hold several), but one that does not exist is an
// error: a typo must not silently pick another server.
func Find(ctx context.Context, major int) (Bin, error) {
	return defaultFinder().find(ctx, major)
}

// FindClient picks the client program name (pg_dump, pg_restore, psql...)
// to use against a server of major version want, needing at least major
// version least: pg_dump refuses a server newer than itself, and
// pg_restore cannot read archives of a newer pg_dump.
//
// The candidates are the program in the directories Find looks in, every
// /usr/lib/postgresql/*/bin included. The first of these wins: one of
// major want; the oldest newer than want, since its archives are readable
// by the most pg_restore versions; the newest of at least least.
func FindClient(ctx context.Context, name string, want, least int) (Program, error) {
	return defaultFinder().findClient(ctx, name, want, least)
}

// finder holds what a lookup reads of the machine, so that tests can point
// it at fake installations.
type finder struct {
	getenv   func(string) string
	libDir   string
	lookPath func(string) (string, error)
	// pgConfig returns pg_config --bindir, "" when there is no pg_config.
	pgConfig func(context.Context) string
}

func defaultFinder() finder {
	return finder{getenv: os.Getenv, libDir: LibDir, lookPath: exec.LookPath, pgConfig: pgConfigBinDir}
}

// pgConfigBinDir asks pg_config on PATH where its programs are.
func pgConfigBinDir(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pg_config", "--bindir")
	cmd.Env = childenv.Base()
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// candidate is a directory to look in and where it came from, for
// messages.
type candidate struct {
	dir, from string
}

// candidates lists the directories to look for program in, first choice
// first, without duplicates. major 0 means every version under libDir,
// newest first; otherwise its own directory comes first and, when all is
// set, the other versions follow it.
func (f finder) candidates(ctx context.Context, program string, major int, all bool) ([]candidate, error) {
	var out []candidate
	if d := f.getenv(EnvBin); d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("$%s=%s is not a directory: point it at a PostgreSQL bin directory or unset it", EnvBin, d)
		}
		out = append(out, candidate{d, "$" + EnvBin})
	}
	if major > 0 {
		out = append(out, candidate{filepath.Join(f.libDir, strconv.Itoa(major), "bin"), ""})
	}
	if major == 0 || all {
		out = append(out, f.libDirs(major)...)
	}
	if p, err := f.lookPath(program); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		out = append(out, candidate{filepath.Dir(p), "PATH"})
	}
	if d := f.pgConfig(ctx); d != "" {
		out = append(out, candidate{d, "pg_config"})
	}
	seen := map[string]bool{}
	uniq := out[:0]
	for _, c := range out {
		key := filepath.Clean(c.dir)
		if real, err := filepath.EvalSymlinks(c.dir); err == nil {
			key = real
		}
		if !seen[key] {
			seen[key] = true
			uniq = append(uniq, c)
		}
	}
	return uniq, nil
}

// libDirs lists libDir/<version>/bin, newest version first, leaving out
// skip's.
func (f finder) libDirs(skip int) []candidate {
	entries, err := os.ReadDir(f.libDir)
	if err != nil {
		return nil
	}
	var versions []int
	for _, e := range entries {
		if v, err := strconv.Atoi(e.Name()); err == nil && v != skip {
			versions = append(versions, v)
		}
	}
	slices.Sort(versions)
	slices.Reverse(versions)
	out := make([]candidate, 0, len(versions))
	for _, v := range versions {
		out = append(out, candidate{filepath.Join(f.libDir, strconv.Itoa(v), "bin"), ""})
	}
	return out
}

func (c candidate) String() string {
	if c.from == "" {
		return c.dir
	}
	return c.from + " " + c.dir
}

func (f finder) find(ctx context.Context, major int) (Bin, error) {
	cands, err := f.candidates(ctx, "postgres", major, false)
	if err != nil {
		return Bin{}, err
	}
	var looked []string
	for _, c := range cands {
		p, err := programVersion(ctx, filepath.Join(c.dir, "postgres"))
		switch {
		case err != nil:
			looked = append(looked, c.String()+" (no postgres)")
		case major != 0 && p.Major != major:
			looked = append(looked, fmt.Sprintf("%s (PostgreSQL %s)", c, p.Version))
		default:
			return Bin{Dir: c.dir, Version: p.Version, Major: p.Major}, nil
		}
	}
	if len(looked) == 0 {
		looked = append(looked, f.libDir+"/*/bin, PATH and pg_config (none there)")
	}
	what, pkg := "PostgreSQL", "postgresql"
	if major != 0 {
		what, pkg = fmt.Sprintf("PostgreSQL %d", major), fmt.Sprintf("postgresql-%d", major)
	}
	return Bin{}, &notFoundError{fmt.Sprintf("no %s server programs found (looked in %s): install %s, or set $%s to its bin directory",
		what, strings.Join(looked, ", "), pkg, EnvBin)}
}

func (f finder) findClient(ctx context.Context, name string, want, least int) (Program, error) {
	dirs, err := f.candidates(ctx, name, want, true)
	if err != nil {
		return Program{}, err
	}
	var cands []Program
	var found []string
	for _, c := range dirs {
		p, err := programVersion(ctx, filepath.Join(c.dir, name))
		if err != nil {
			continue
		}
		cands = append(cands, p)
		found = append(found, fmt.Sprintf("%s (%s)", p.Path, p.Version))
	}
	if p, ok := pickClient(cands, want, least); ok {
		return p, nil
	}
	need := max(want, least)
	if len(found) == 0 {
		where := make([]string, 0, len(dirs))
		for _, c := range dirs {
			where = append(where, c.String())
		}
		if len(where) == 0 {
			where = append(where, f.libDir+"/*/bin, PATH and pg_config (none there)")
		}
		return Program{}, &notFoundError{fmt.Sprintf("%s not found (looked in %s): install the PostgreSQL %d client programs (e.g. apt-get install postgresql-client-%d)",
			name, strings.Join(where, ", "), need, need)}
	}
	return Program{}, &notFoundError{fmt.Sprintf("no %s of PostgreSQL %d or newer found (have %s): install postgresql-client-%d",
		name, least, strings.Join(found, ", "), need)}
}

// pickClient applies FindClient's preference to cands, listed first
// choice first.
func pickClient(cands []Program, want, least int) (Program, bool) {
	for _, p := range cands {
		if p.Major == want && want >= least {
			return p, true
		}
	}
	sorted := append([]Program(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Major < sorted[j].Major })
	for _, p := range sorted {
		if p.Major > want && p.Major >= least {
			return p, true
		}
	}
	for i := len(sorted) - 1; i >= 0; i-- {
		if sorted[i].Major >= least {
			return sorted[i], true
		}
	}
	return Program{}, false
}

// versionPattern finds the version in a program's --version output, such
// as "postgres (PostgreSQL) 15.13 (Debian 15.13-1.pgdg120+1)".
var versionPattern = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// programVersion runs path --version.
func programVersion(ctx context.Context, path string) (Program, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "--version")
	cmd.Env = childenv.Base("LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return Program{}, fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionPattern.FindStringSubmatch(string(out))
	if m == nil {
		return Program{}, fmt.Errorf("%s --version: unexpected output %q", path, strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	return Program{Path: path, Version: m[1] + m[2], Major: major}, nil
}
