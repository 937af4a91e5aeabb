package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/report"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

// fakeKind is a kind with no optional capability: it backs up one fixed
// file, restores it to --to and drills by restoring it and comparing.
type fakeKind struct{}

const payload = "the ledger as of the backup\n"

func (fakeKind) Name() lifeboat.AssetKind { return "fake" }

func (fakeKind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	s, err := treestore.Begin(ctx, b.Repo, treestore.Options{Asset: b.Asset.Name, Kind: "fake", LockWait: b.LockWait, Log: b.Log})
	if err != nil {
		return nil, err
	}
	defer s.Abort()
	if err := s.Add(ctx, &repo.Node{Path: "ledger", Type: repo.NodeFile, Mode: 0o600}, strings.NewReader(payload)); err != nil {
		return nil, err
	}
	return s.Commit(ctx, "full", nil)
}

func (fakeKind) RestoreFlags() []asset.Flag { return nil }

func restoreTo(ctx context.Context, r *repo.Repository, s *repo.Snapshot, dir string) error {
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return err
	}
	_, err = r.RestoreTree(ctx, idx, s.Tree, repo.RestoreOptions{Dir: dir, UID: -1, GID: -1})
	return err
}

func (fakeKind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	if r.To == "" {
		return nil, asset.Usagef("needs --to DIR")
	}
	if err := restoreTo(ctx, r.Repo, r.Snapshot, r.To); err != nil {
		return nil, err
	}
	return &asset.Restored{Snapshot: r.Snapshot, Lines: []string{"restored " + r.Snapshot.ID.Short()}}, nil
}

func (fakeKind) Drill(ctx context.Context, d asset.Drill) error {
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)
	if err := restoreTo(ctx, d.Repo(), s, d.WorkDir()); err != nil {
		return err
	}
	d.Phase(evidence.PhaseWrite)
	got, err := os.ReadFile(filepath.Join(d.WorkDir(), "ledger"))
	d.Integrity(asset.IntegrityCheck{Name: "content as backed up", Passed: err == nil && string(got) == payload, Got: string(got)})
	d.Report().Bytes += int64(len(got))
	d.Phase(evidence.PhaseChecks)
	return nil
}

// newService writes a policy with one fake asset over a new file://
// repository and loads it with a registry that knows the fake kind only.
func newService(t *testing.T, extra string) (*app.Service, error) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lifeboat.yaml")
	doc := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: file://%s
    key_file: %s
tiers:
  gold: {rpo: 1h, rto: 1h}
assets:
  - name: ledger
    kind: fake
    tier: gold
    schedule: "@hourly"
    repositories: [primary]
%s`, filepath.Join(dir, "state"), filepath.Join(dir, "repo"), filepath.Join(dir, "key"), extra)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := repo.GenerateKeyFile(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "repo"), 0o700); err != nil {
		t.Fatal(err)
	}
	svc, err := app.Load(cfg, app.Options{Kinds: asset.NewRegistry(fakeKind{})})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { svc.Close() })
	rp := &svc.Policy.Repositories[0]
	be, err := app.OpenBackend(t.Context(), rp)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	sec, err := app.SecretFor(rp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), be, sec, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	return svc, nil
}

// refusal checks err is a usage error of one line that says want.
func refusal(t *testing.T, what string, err error, want string) {
	t.Helper()
	if err == nil || !asset.IsUsage(err) || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: got %v (usage error: %v), want one line saying %q", what, err, asset.IsUsage(err), want)
	}
}

// TestKindWithoutCapabilities drives every action through the service for
// a kind that has none of the optional capabilities: what needs one
// refuses with one clear line, the rest works.
func TestKindWithoutCapabilities(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	svc, err := newService(t, "")
	if err != nil {
		t.Fatal(err)
	}

	b, err := svc.Backup(ctx, app.BackupRequest{Asset: "ledger"})
	if err != nil {
		t.Fatal(err)
	}
	if b.What != "fake" || b.Snapshot.Kind != "fake" {
		t.Errorf("backup: what %q, snapshot kind %q", b.What, b.Snapshot.Kind)
	}

	rows, err := svc.Snapshots(ctx, "ledger", "")
	if err != nil || len(rows) != 1 || rows[0].ID != b.Snapshot.ID.String() || rows[0].Kind != "fake" || rows[0].StopLSN != "" {
		t.Fatalf("snapshots: %+v, %v", rows, err)
	}

	to := t.TempDir()
	res, err := svc.Restore(ctx, app.RestoreRequest{Asset: "ledger", To: to, UID: -1, GID: -1})
	if err != nil || res.Snapshot.ID != b.Snapshot.ID {
		t.Fatalf("restore: %+v, %v", res, err)
	}
	if got, err := os.ReadFile(filepath.Join(to, "ledger")); err != nil || string(got) != payload {
		t.Errorf("restored %q, %v", got, err)
	}
	_, err = svc.Restore(ctx, app.RestoreRequest{Asset: "ledger", To: t.TempDir(), UID: -1, GID: -1,
		Flags: asset.FlagValues{"time": "2026-12-01T00:00:00Z"}})
	refusal(t, "restore --time", err, "--time does not apply to fake assets (they take no flags of their own)")

	rep, err := svc.Drill(ctx, app.DrillRequest{Asset: "ledger"})
	if err != nil || !rep.Passed || len(rep.Checks) != 1 || !rep.Checks[0].Passed || rep.Bytes != int64(len(payload)) {
		t.Fatalf("drill: %+v, %v", rep, err)
	}
	if len(rep.Phases) != 3 || rep.RTOTargetSeconds != 3600 || rep.Snapshot != b.Snapshot.ID.String() {
		t.Errorf("drill report: phases %+v, RTO target %v, snapshot %s", rep.Phases, rep.RTOTargetSeconds, rep.Snapshot)
	}

	results, err := svc.Health(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]health.Result{}
	for _, r := range results {
		seen[r.Check] = r
	}
	if r, ok := seen[health.CheckBackup]; !ok || !r.OK {
		t.Errorf("check: backup %+v", r)
	}
	if _, ok := seen[health.CheckWALLag]; ok {
		t.Errorf("check: a kind without point-in-time recovery has a WAL lag check: %+v", seen[health.CheckWALLag])
	}

	in, err := svc.ReportInput(ctx, time.Time{}, time.Now(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Drills) != 1 || in.Sizes["ledger"] != int64(len(payload)) {
		t.Errorf("report input: %d drills, sizes %v", len(in.Drills), in.Sizes)
	}
	var md bytes.Buffer
	if err := report.Render(&md, "md", in); err != nil || !strings.Contains(md.String(), "ledger") {
		t.Errorf("report: %v\n%s", err, md.String())
	}
	stored, err := svc.ReportInput(ctx, time.Time{}, time.Now(), "primary")
	if err != nil || len(stored.Drills) != 1 || stored.Drills[0].ID != rep.ID {
		t.Errorf("report from the repository: %+v, %v", stored.Drills, err)
	}

	_, _, _, err = svc.Diff(ctx, "ledger", "", b.Snapshot.ID.String(), b.Snapshot.ID.String())
	refusal(t, "diff", err, "diff compares snapshots of kinds (none)")
	_, err = svc.Export(ctx, "", b.Snapshot.ID.String(), asset.ExportOptions{Out: filepath.Join(t.TempDir(), "x")})
	refusal(t, "export", err, "export writes snapshots of kinds (none)")
	_, err = svc.RestorePoint(ctx, "ledger", "before-upgrade")
	refusal(t, "restore point", err, "restore points exist for assets with point-in-time recovery")
}

// TestKindWithoutKeysRefusesThem: a kind that reads no keys of its own
// makes any extra key of its assets a policy error naming the line.
func TestKindWithoutKeysRefusesThem(t *testing.T) {
	t.Parallel()
	_, err := newService(t, "    url: s3://uploads/\n")
	var fe *policy.FieldError
	if err == nil || !asset.IsUsage(err) || !errors.As(err, &fe) || !strings.Contains(err.Error(), `unknown key "url" in asset "ledger"`) {
		t.Fatalf("got %v", err)
	}
}
