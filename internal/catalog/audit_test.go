package catalog

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/audit"
)

func TestAuditAppendAndRead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), FileName)
	c, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	add := func(n int) {
		t.Helper()
		_, err := c.AppendAudit(ctx, func(chain string, last uint64, h audit.Hash) ([]audit.Record, error) {
			var out []audit.Record
			for range n {
				r, err := audit.Append(chain, last, h, &audit.Event{Type: audit.TypeBackup, Time: t0.Add(time.Duration(last) * time.Hour), Outcome: audit.OK})
				if err != nil {
					return nil, err
				}
				out = append(out, r)
				last, h = r.Seq, r.Hash
			}
			return out, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add(2)
	add(3)
	chain, err := c.AuditChain(ctx)
	if err != nil {
		t.Fatal(err)
	}
	head, h, err := c.AuditHead(ctx)
	if err != nil || head != 5 {
		t.Fatalf("head %d: %v", head, err)
	}
	v := audit.NewVerifier(chain)
	var seqs []uint64
	if err := c.AuditRecords(ctx, AuditFilter{}, func(r *audit.Record) error {
		seqs = append(seqs, r.Seq)
		if b := v.Add(r); b != nil {
			t.Fatal(b)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 5 || v.Head() != h {
		t.Fatalf("records %v, head %s want %s", seqs, v.Head(), h)
	}
	var since []uint64
	if err := c.AuditRecords(ctx, AuditFilter{From: 2, To: 4, Since: t0.Add(150 * time.Minute)}, func(r *audit.Record) error {
		since = append(since, r.Seq)
		return nil
	}); err != nil || len(since) != 1 || since[0] != 4 {
		t.Fatalf("filtered: %v %v", since, err)
	}
	if err := c.SetAuditSealed(ctx, "repo1", 4, t0); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAuditSealed(ctx, "repo1", 2, t0); err != nil {
		t.Fatal(err)
	}
	if n, err := c.AuditSealed(ctx, "repo1"); err != nil || n != 4 {
		t.Fatalf("sealed %d: %v", n, err)
	}
	if n, err := c.AuditSealed(ctx, "repo2"); err != nil || n != 0 {
		t.Fatalf("never sealed %d: %v", n, err)
	}
	c.Close()
	c, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if again, err := c.AuditChain(ctx); err != nil || again != chain {
		t.Fatalf("chain id changed on reopening: %s, %s, %v", chain, again, err)
	}
}
