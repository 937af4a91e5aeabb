package app_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
)

// TestRetentionReduceNeedsApproval: an expire under rules that keep less
// than the last expire's waits for approval; the same rules, or more,
// do not.
func TestRetentionReduceNeedsApproval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	keys := t.TempDir()
	key := filepath.Join(keys, "approver")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	signers := filepath.Join(keys, "allowed_signers")
	f := strings.Fields(string(pub))
	if err := os.WriteFile(signers, []byte("approver@example.com "+f[0]+" "+f[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := newService(t, fmt.Sprintf(`    retention: { keep_within: 30d }
approvals:
  allowed_signers: %s
  required: 1
  actions: [retention_reduce]
`, signers))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Backup(ctx, app.BackupRequest{Asset: "ledger"}); err != nil {
		t.Fatal(err)
	}
	rp := &svc.Policy.Repositories[0]
	if _, err := svc.Expire(ctx, rp, app.ExpireOptions{Grace: 1}); err != nil {
		t.Fatalf("first expire (records the rules): %v", err)
	}
	// with loads the policy again with the keep_within given.
	with := func(keep string) *app.Service {
		t.Helper()
		doc, err := os.ReadFile(svc.Policy.Source)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(doc), "keep_within: 30d", "keep_within: "+keep, 1)
		path := filepath.Join(t.TempDir(), "lifeboat.yaml")
		if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := app.Load(path, app.Options{Kinds: asset.NewRegistry(fakeKind{})})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	shorter := with("1d")
	_, err = shorter.Expire(ctx, &shorter.Policy.Repositories[0], app.ExpireOptions{Grace: 1})
	var re *approval.RequiredError
	if !errors.As(err, &re) || re.Action != "retention_reduce" {
		t.Fatalf("expire under shorter retention: %v", err)
	}
	row, err := shorter.Approval(ctx, re.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if got := row.Request.Describe(); !strings.Contains(got, `retention.ledger="keep_within=720h0m0s -> keep_within=24h0m0s"`) {
		t.Fatalf("request: %s", got)
	}
	// A dry run needs none.
	if _, err := shorter.Expire(ctx, &shorter.Policy.Repositories[0], app.ExpireOptions{Grace: 1, DryRun: true}); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	approved := app.WithApproval(ctx, re.RequestID)
	if _, err := shorter.Expire(approved, &shorter.Policy.Repositories[0], app.ExpireOptions{Grace: 1}); !errors.Is(err, approval.ErrNotApproved) {
		t.Fatalf("expire before approval: %v", err)
	}
	if _, err := shorter.Approve(ctx, re.RequestID, key, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := shorter.Expire(approved, &shorter.Policy.Repositories[0], app.ExpireOptions{Grace: 1}); err != nil {
		t.Fatalf("approved expire: %v", err)
	}
	// The shorter rules are now the recorded ones; longer ones need nothing.
	if _, err := shorter.Expire(ctx, &shorter.Policy.Repositories[0], app.ExpireOptions{Grace: 1}); err != nil {
		t.Fatalf("expire under the same rules: %v", err)
	}
	longer := with("40d")
	if _, err := longer.Expire(ctx, &longer.Policy.Repositories[0], app.ExpireOptions{Grace: 1}); err != nil {
		t.Fatalf("expire under longer rules: %v", err)
	}
}

// TestExpireThatDeletesNeedsApproval: an expire whose plan deletes a
// snapshot waits for an approval naming that snapshot; a dry run, and a
// run that deletes nothing, do not; forget is an expire too.
func TestExpireThatDeletesNeedsApproval(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	keys := t.TempDir()
	key := filepath.Join(keys, "approver")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	signers := filepath.Join(keys, "allowed_signers")
	f := strings.Fields(string(pub))
	if err := os.WriteFile(signers, []byte("approver@example.com "+f[0]+" "+f[1]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := newService(t, fmt.Sprintf(`    retention: { daily: 1 }
approvals:
  allowed_signers: %s
  required: 1
  actions: [expire]
`, signers))
	if err != nil {
		t.Fatal(err)
	}
	rp := &svc.Policy.Repositories[0]
	first, err := svc.Backup(ctx, app.BackupRequest{Asset: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Expire(ctx, rp, app.ExpireOptions{Grace: 1}); err != nil {
		t.Fatalf("an expire that deletes nothing: %v", err)
	}
	if _, err := svc.Backup(ctx, app.BackupRequest{Asset: "ledger"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := svc.Expire(ctx, rp, app.ExpireOptions{Grace: 1, DryRun: true}); err != nil || len(rep.Snapshots) != 2 {
		t.Fatalf("dry run: %v", err)
	}
	_, err = svc.Expire(ctx, rp, app.ExpireOptions{Grace: 1})
	var re *approval.RequiredError
	if !errors.As(err, &re) || re.Action != "expire" {
		t.Fatalf("an expire that deletes a snapshot: %v", err)
	}
	row, err := svc.Approval(ctx, re.RequestID)
	if err != nil {
		t.Fatal(err)
	}
	if got := row.Request.Describe(); !strings.Contains(got, `delete_snapshots="`+first.Snapshot.ID.String()+`"`) {
		t.Fatalf("request: %s", got)
	}
	if _, err := svc.Approve(ctx, re.RequestID, key, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Expire(app.WithApproval(ctx, re.RequestID), rp, app.ExpireOptions{Grace: 1})
	if err != nil {
		t.Fatalf("approved expire: %v", err)
	}
	deleted := 0
	for _, s := range rep.Snapshots {
		if s.Deleted {
			deleted++
		}
	}
	if deleted != 1 {
		t.Fatalf("approved expire deleted %d snapshots", deleted)
	}
	third, err := svc.Backup(ctx, app.BackupRequest{Asset: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.Forget(ctx, "primary", third.Snapshot.ID.String()); !errors.As(err, &re) || re.Action != "expire" {
		t.Fatalf("forget: %v", err)
	}
}
