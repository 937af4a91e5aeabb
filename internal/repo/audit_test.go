package repo

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAuditSeals: seals are stored once, listed by chain, read back
// authenticated, and one planted without the key is refused.
func TestAuditSeals(t *testing.T) {
	t.Parallel()
	r, dir, _ := newTestRepo(t)
	ctx := context.Background()
	seal := []byte("lifeboat-audit-seal v1\n...")
	for _, c := range []struct{ chain, rel string }{{"00aa", "00000000000000000002-00000000000000000001"}, {"00bb", "00000000000000000001-00000000000000000001"}} {
		if err := r.PutAuditSeal(ctx, c.chain, c.rel, seal, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	// The same seal again is no error; other content under its name is.
	if err := r.PutAuditSeal(ctx, "00aa", "00000000000000000002-00000000000000000001", seal, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := r.PutAuditSeal(ctx, "00aa", "00000000000000000002-00000000000000000001", []byte("other"), time.Time{}); !errors.Is(err, ErrConflict) {
		t.Fatalf("other content: %v", err)
	}
	// A seal planted by someone without the key.
	planted := filepath.Join(dir, AuditArea, "00aa", "00000000000000000003-00000000000000000003")
	if err := os.WriteFile(planted, []byte("forged"), 0o600); err != nil {
		t.Fatal(err)
	}
	infos, err := r.AuditSeals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 || infos[0].Chain != "00aa" || infos[2].Chain != "00bb" || infos[0].Time.IsZero() {
		t.Fatalf("listed %+v", infos)
	}
	got, err := r.GetAuditSeal(ctx, "00aa", "00000000000000000002-00000000000000000001")
	if err != nil || !bytes.Equal(got, seal) {
		t.Fatalf("read back %q, %v", got, err)
	}
	if _, err := r.GetAuditSeal(ctx, "00aa", "00000000000000000003-00000000000000000003"); !errors.Is(err, ErrUnauthentic) {
		t.Fatalf("planted seal: %v", err)
	}
	if err := r.DeleteAuditSeal(ctx, "00bb", "00000000000000000001-00000000000000000001"); err != nil {
		t.Fatal(err)
	}
	if infos, _ := r.AuditSeals(ctx); len(infos) != 2 {
		t.Fatalf("after delete: %+v", infos)
	}
}
