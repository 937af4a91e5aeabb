package postgres

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestUnreadableBy: whether the server's user can read a file is judged
// by the owner, group and mode bits that apply to it, as the kernel does.
func TestUnreadableBy(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The test's directories are private; others must reach the file.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	owner, group := st.Uid, st.Gid
	other := owner + 1000
	if owner == 0 {
		other = 4242
	}
	for _, c := range []struct {
		mode     os.FileMode
		uid, gid uint32
		readable bool
	}{
		{0o600, owner, group, true},
		{0o200, owner, group, false},
		{0o600, other, group, false}, // the owner's bits do not apply to another user
		{0o640, other, group, true},  // the group's do, to a member
		{0o640, other, group + 1, false},
		{0o644, other, group + 1, true},
		{0o000, 0, 0, true}, // root reads anything
	} {
		if err := os.Chmod(f, c.mode); err != nil {
			t.Fatal(err)
		}
		why := unreadableBy(f, c.uid, c.gid)
		if (why == "") != c.readable {
			t.Errorf("mode %04o, uid %d gid %d: %q, want readable %v", c.mode, c.uid, c.gid, why, c.readable)
		}
		if why != "" && !strings.Contains(why, "mode") {
			t.Errorf("%q does not name the mode", why)
		}
	}
	// A readable file in a directory the user cannot search is not.
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if why := unreadableBy(f, other, group+1); !strings.Contains(why, "the directory "+dir) {
		t.Errorf("file under a 0700 directory of another user: %q", why)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if why := unreadableBy(filepath.Join(dir, "missing"), owner, group); why == "" {
		t.Error("a missing file is readable")
	}
}

// TestCheckSegment: a segment fetched back must be whole and its first
// page must name the timeline and position its name says.
func TestCheckSegment(t *testing.T) {
	t.Parallel()
	const segSize = 16 << 20
	name := "000000020000000100000003"
	seg := make([]byte, segSize)
	binary.LittleEndian.PutUint16(seg[0:2], 0xD110)
	binary.LittleEndian.PutUint32(seg[4:8], 2)
	binary.LittleEndian.PutUint64(seg[8:16], (0x100+3)*segSize)
	path := filepath.Join(t.TempDir(), name)
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(seg)
	if err := checkSegment(path, name, segSize); err != nil {
		t.Fatalf("a good segment: %v", err)
	}
	write(seg[:segSize/2])
	if err := checkSegment(path, name, segSize); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("half a segment: %v", err)
	}
	binary.LittleEndian.PutUint32(seg[4:8], 1)
	write(seg)
	if err := checkSegment(path, name, segSize); err == nil || !strings.Contains(err.Error(), "timeline 1") {
		t.Fatalf("another timeline's page: %v", err)
	}
}
