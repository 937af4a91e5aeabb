package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/s3test"
)

// TestHealthWarnsWhenVersioningIsOff: check's versioning item fails, and
// doctor warns, for an S3 repository whose bucket keeps no versions; both
// pass once it does.
func TestHealthWarnsWhenVersioningIsOff(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "plain", false)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "lifeboat.yaml")
	doc := fmt.Sprintf(`state_dir: %s
repositories:
  - name: primary
    url: s3://plain/repo?endpoint=%s&region=%s&path_style=true
    access_key: %s
    secret_key: %s
    key_file: %s
assets:
  - name: ledger
    kind: fake
    repositories: [primary]
`, filepath.Join(dir, "state"), srv.Endpoint, srv.Region, srv.AccessKey, srv.SecretKey, filepath.Join(dir, "key"))
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := repo.GenerateKeyFile(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	svc, err := app.Load(cfg, app.Options{Kinds: asset.NewRegistry(fakeKind{})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	rp := &svc.Policy.Repositories[0]
	be, err := app.OpenBackend(t.Context(), rp)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := app.SecretFor(rp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Init(t.Context(), be, sec, repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	be.Close()
	versioning := func() health.Result {
		t.Helper()
		rs, err := svc.Health(t.Context(), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Check == health.CheckVersioning && r.Subject == "primary" {
				return r
			}
		}
		t.Fatalf("no versioning item in %+v", rs)
		return health.Result{}
	}
	probe := func() asset.Probe {
		t.Helper()
		prs, err := svc.Doctor(t.Context(), []*policy.Asset{&svc.Policy.Assets[0]}, app.DoctorOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, pr := range prs {
			if pr.Name == "versioning" && pr.Repository == "primary" {
				return pr
			}
		}
		t.Fatalf("doctor has no versioning probe: %+v", prs)
		return asset.Probe{}
	}
	if r := versioning(); r.OK || !strings.Contains(r.Message, "versioning is off") {
		t.Fatalf("versioning item of a bucket without versioning: %+v", r)
	}
	if pr := probe(); pr.Status != asset.ProbeWarn || pr.Fix == "" {
		t.Fatalf("doctor on a bucket without versioning: %+v", pr)
	}
	srv.EnableVersioning(t, "plain")
	if r := versioning(); !r.OK {
		t.Fatalf("versioning item once it is on: %+v", r)
	}
	if pr := probe(); pr.Status != asset.ProbeOK {
		t.Fatalf("doctor once versioning is on: %+v", pr)
	}
}
