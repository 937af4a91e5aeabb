package pgtest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

type flagKind int

const (
	notPath flagKind = iota
	fileFlag
	dirFlag
)

// kindOf classifies the test binary flags whose value is a path the binary writes to. cmd/go points
// them into its root-owned work directory, which the unprivileged child cannot write.
func kindOf(name string) flagKind {
	switch name {
	case "test.testlogfile", "test.coverprofile", "test.cpuprofile", "test.memprofile",
		"test.blockprofile", "test.mutexprofile", "test.trace":
		return fileFlag
	case "test.outputdir", "test.gocoverdir":
		return dirFlag
	}
	return notPath
}

// redirect is an output path of the test binary moved into the shared scratch directory for the
// child, and copied back to where cmd/go expects it once the child exits.
type redirect struct {
	orig  string // absolute path cmd/go asked for
	child string // path inside scratch that the child writes instead
	dir   bool
}

// flagHit is one occurrence of a path flag in the argument list.
type flagHit struct {
	valueIdx int  // index of the argument holding the value
	inline   bool // "-name=value" rather than "-name value"
	prefix   string
	name     string
	value    string
}

// rewriteArgs returns args with every path flag (see kindOf) pointing into scratch, and the
// redirects to apply. Relative values are resolved as the testing package does: profiles against
// -test.outputdir when set, everything else against cwd. Arguments after "--" are left alone.
func rewriteArgs(args []string, cwd, scratch string) ([]string, []redirect) {
	out := append([]string(nil), args...)
	var hits []flagHit
	outputDir := ""
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		h := flagHit{valueIdx: i}
		if j := strings.IndexByte(name, '='); j >= 0 {
			name, h.value, h.inline = name[:j], name[j+1:], true
			h.prefix = a[:len(a)-len(h.value)]
		}
		h.name = name
		if kindOf(name) == notPath {
			continue
		}
		if !h.inline {
			if i+1 >= len(out) {
				break
			}
			i++
			h.valueIdx, h.value = i, out[i]
		}
		if name == "test.outputdir" {
			outputDir = absFrom(cwd, h.value)
		}
		hits = append(hits, h)
	}

	var redirects []redirect
	for n, h := range hits {
		if h.value == "" {
			continue // an empty value disables the output
		}
		base := filepath.Base(h.value)
		if base == "." || base == string(filepath.Separator) {
			base = "out"
		}
		r := redirect{
			orig:  absFrom(cwd, h.value),
			child: filepath.Join(scratch, strconv.Itoa(n)+"-"+strings.TrimPrefix(h.name, "test.")+"-"+base),
			dir:   kindOf(h.name) == dirFlag,
		}
		if !r.dir && h.name != "test.testlogfile" && outputDir != "" && !filepath.IsAbs(h.value) {
			r.orig = filepath.Join(outputDir, h.value)
		}
		redirects = append(redirects, r)
		if h.inline {
			out[h.valueIdx] = h.prefix + r.child
		} else {
			out[h.valueIdx] = r.child
		}
	}
	return out, redirects
}

func absFrom(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// isFuzzing reports whether the test binary was asked to fuzz or to be a fuzz worker; fuzzing writes
// its corpus into root-owned directories, so RunMain does not re-execute it.
func isFuzzing(args []string) bool {
	for i, a := range args {
		if a == "--" {
			return false
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case strings.HasPrefix(name, "test.fuzzworker"):
			return name == "test.fuzzworker" || name == "test.fuzzworker=true"
		case strings.HasPrefix(name, "test.fuzz="):
			return name != "test.fuzz="
		case name == "test.fuzz" && i+1 < len(args):
			return args[i+1] != ""
		}
	}
	return false
}

// prepare creates the child's copy: a directory owned by the test user holding the original's
// files (the coverage directory comes with a meta-data file the child must read).
func (r redirect) prepare(uid, gid int) error {
	if !r.dir {
		return nil
	}
	if err := mkdirOwned(r.child, uid, gid); err != nil {
		return err
	}
	if _, err := os.Stat(r.orig); err != nil {
		return nil
	}
	return copyTree(r.orig, r.child, func(p string) error { return os.Lchown(p, uid, gid) })
}

// copyBack copies what the child wrote to the path cmd/go expects.
func (r redirect) copyBack() error {
	if r.dir {
		if _, err := os.Stat(r.child); err != nil {
			return nil
		}
		return copyTree(r.child, r.orig, nil)
	}
	if _, err := os.Stat(r.child); err != nil {
		return nil // the child did not write it, for example because the flag was overridden
	}
	if err := os.MkdirAll(filepath.Dir(r.orig), 0o755); err != nil {
		return fmt.Errorf("copy back %s: %w", r.orig, err)
	}
	return copyFile(r.child, r.orig, 0o644)
}

// copyTree copies the directories and regular files under src into dst; own, when set, is applied
// to everything created.
func copyTree(src, dst string, own func(string) error) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(target, 0o755); err != nil {
				return fmt.Errorf("create %s: %w", target, err)
			}
		case d.Type().IsRegular():
			if err := copyFile(p, target, 0o644); err != nil {
				return err
			}
		default:
			return nil
		}
		if own != nil {
			if err := own(target); err != nil {
				return fmt.Errorf("chown %s: %w", target, err)
			}
		}
		return nil
	})
}
