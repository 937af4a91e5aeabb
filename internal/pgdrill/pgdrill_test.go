package pgdrill

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/testenv"
)

// workDrill is a drill handle with only its work directory.
type workDrill struct {
	asset.Drill
	work string
}

func (d workDrill) WorkDir() string { return d.work }

// TestNewServerHandsOverLast: as root, the data directory and the work
// directory stay root's until HandOver, so the restore that writes into
// them as root never writes into a directory the run-as user holds.
func TestNewServerHandsOverLast(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "pgdrill", "handing a directory to another user needs root")
	}
	t.Parallel()
	as, err := pgbin.EnsureUser(context.Background(), "lifeboat-test", "/nonexistent", "lifeboat tests (PostgreSQL refuses root)")
	if err != nil {
		t.Fatal(err)
	}
	// As the drill framework makes it: private, root's.
	d := workDrill{work: filepath.Join(t.TempDir(), "work")}
	if err := os.Mkdir(d.work, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(d, as)
	if err != nil {
		t.Fatal(err)
	}
	owner := func(p string) (uint32, os.FileMode) {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode().Perm()
	}
	for _, p := range []string{d.work, srv.DataDir} {
		if uid, mode := owner(p); uid != 0 || mode&0o077 != 0 {
			t.Errorf("before the handover %s is %d's, %v; want root's, private", p, uid, mode)
		}
	}
	if uid, _ := owner(filepath.Dir(srv.LogFile)); uid != uint32(as.UID) {
		t.Errorf("log directory is %d's, want %d's", uid, as.UID)
	}
	if err := HandOver(d, srv, as); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.work, srv.DataDir} {
		if uid, _ := owner(p); uid != uint32(as.UID) {
			t.Errorf("after the handover %s is %d's, want %d's", p, uid, as.UID)
		}
	}
}
