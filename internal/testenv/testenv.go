// Package testenv holds the rule the test harnesses (pgtest, s3test) share
// for a missing external server: skip on a developer's machine, fail in CI,
// where a skip would hide untested code.
package testenv

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// EnvDisallowSkip, set to a true value, turns skips into failures outside
// CI too.
const EnvDisallowSkip = "LIFEBOAT_TEST_DISALLOW_SKIP"

// SkipDisallowed reports whether CI or LIFEBOAT_TEST_DISALLOW_SKIP is set
// to a true value.
func SkipDisallowed() bool {
	for _, k := range []string{"CI", EnvDisallowSkip} {
		v := strings.ToLower(strings.TrimSpace(os.Getenv(k)))
		if v != "" && v != "0" && v != "false" {
			return true
		}
	}
	return false
}

// SkipOrFail skips the test for reason, or fails it when skipping is not
// allowed. who prefixes the message ("pgtest", "s3test").
func SkipOrFail(t testing.TB, who, reason string) {
	t.Helper()
	if SkipDisallowed() {
		t.Fatalf("%s: %s; skipping is not allowed when CI or %s=1 is set", who, reason, EnvDisallowSkip)
	}
	t.Skip(who + ": " + reason)
}

// IsExecutable reports whether p is a regular file someone may execute.
func IsExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}

// SmallVolume mounts a tmpfs of size bytes at a new temporary directory
// until the test ends, and returns the directory: a real filesystem that
// fills up, for tests of what happens when a disk is full. Mounting
// needs root, which CI has; without it the test is skipped (or fails
// where skipping is not allowed).
func SmallVolume(t testing.TB, size int64) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		SkipOrFail(t, "testenv", fmt.Sprintf("mount a %d-byte tmpfs: %v", size, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}
