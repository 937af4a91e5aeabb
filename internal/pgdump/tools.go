package pgdump

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// pgLibDir is where Debian and Ubuntu install each PostgreSQL major
// version's programs side by side.
const pgLibDir = "/usr/lib/postgresql"

// tool is one PostgreSQL client program and its version.
type tool struct {
	Path    string
	Version string // e.g. "15.13"
	Major   int
}

var versionPattern = regexp.MustCompile(`\(PostgreSQL\) (\d+)(\.\d+)?`)

// toolVersion runs path --version.
func toolVersion(ctx context.Context, path string) (tool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return tool{}, fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionPattern.FindStringSubmatch(string(out))
	if m == nil {
		return tool{}, fmt.Errorf("%s --version: unexpected output %q", path, strings.TrimSpace(string(out)))
	}
	major, _ := strconv.Atoi(m[1])
	return tool{Path: path, Version: m[1] + m[2], Major: major}, nil
}

// findTool picks the program called name to use against a server of major
// version want, needing at least major version least (pg_dump refuses a
// server newer than itself; pg_restore cannot read archives of a newer
// pg_dump). Candidates are the one on PATH and those in
// /usr/lib/postgresql/*/bin. The first of these wins: one of major want
// (PATH first); the oldest newer than want, since its archives are
// readable by the most pg_restore versions; the newest at least least.
func findTool(ctx context.Context, name string, want, least int) (tool, error) {
	var paths []string
	if p, err := exec.LookPath(name); err == nil {
		paths = append(paths, p)
	}
	if m, _ := filepath.Glob(filepath.Join(pgLibDir, "*", "bin", name)); len(m) > 0 {
		paths = append(paths, m...)
	}
	var cands []tool
	var found []string
	seen := map[string]bool{}
	for _, p := range paths {
		if real, err := filepath.EvalSymlinks(p); err == nil && seen[real] {
			continue // PATH may lead to one of the directories below
		} else if err == nil {
			seen[real] = true
		}
		t, err := toolVersion(ctx, p)
		if err != nil {
			continue
		}
		cands = append(cands, t)
		found = append(found, fmt.Sprintf("%s (%s)", t.Path, t.Version))
	}
	for _, t := range cands {
		if t.Major == want && want >= least {
			return t, nil
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].Major < cands[j].Major })
	for _, t := range cands {
		if t.Major > want && t.Major >= least {
			return t, nil
		}
	}
	for i := len(cands) - 1; i >= 0; i-- {
		if cands[i].Major >= least {
			return cands[i], nil
		}
	}
	need := max(want, least)
	if len(found) == 0 {
		return tool{}, fmt.Errorf("%s not found on PATH or in %s/*/bin: install the PostgreSQL %d client programs (e.g. apt-get install postgresql-client-%d)",
			name, pgLibDir, need, need)
	}
	return tool{}, fmt.Errorf("no %s of PostgreSQL %d or newer found (have %s): install postgresql-client-%d",
		name, least, strings.Join(found, ", "), need)
}
