package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	s3store "github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// s3Harness is a harness as run() sets it up with -storage s3, minus the
// processes: enough to render the tools' files.
func s3Harness(root string) *harness {
	return &harness{
		cfg:   config{root: root, processMax: 2, storage: storageS3, tools: []string{toolPgBackRest, toolLifeboat}},
		cl:    &cluster{Server: &pgbin.Server{DataDir: filepath.Join(root, "data"), SocketDir: filepath.Join(root, "sock"), Port: 5499}},
		minio: &minioServer{Endpoint: "https://127.0.0.1:9123", Port: 9123, AccessKey: "lbbench-abc", SecretKey: "SECRETVALUE", CAFile: filepath.Join(root, "minio", "ca.pem")},
	}
}

func TestPgBackRestConfigS3(t *testing.T) {
	h := s3Harness("/var/tmp/bench")
	conf := h.pgbackrestConfig()
	for _, want := range []string{
		"repo1-type=s3\n", "repo1-path=/pgbackrest\n", "repo1-s3-bucket=pgbackrest\n", "repo1-s3-endpoint=127.0.0.1\n",
		"repo1-storage-port=9123\n", "repo1-s3-uri-style=path\n", "repo1-s3-region=us-east-1\n",
		"repo1-s3-key=lbbench-abc\n", "repo1-s3-key-secret=SECRETVALUE\n", "repo1-storage-ca-file=/var/tmp/bench/minio/ca.pem\n",
		// The same compression and parallelism as with local directories.
		"compress-type=zst\n", "compress-level=3\n", "process-max=2\n", "repo1-retention-full=99\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "pgbr-repo") || strings.Contains(conf, "verify-tls") {
		t.Errorf("S3 config names the local repository or turns TLS checks off:\n%s", conf)
	}
	spec := h.pgbackrestSpec()
	if spec.bucket != "pgbackrest" || spec.repoDir != "" {
		t.Errorf("spec bucket %q repoDir %q", spec.bucket, spec.repoDir)
	}

	h.minio, h.cfg.storage = nil, storageFS
	conf = h.pgbackrestConfig()
	if !strings.Contains(conf, "[global]\nrepo1-path=/var/tmp/bench/pgbr-repo\nrepo1-retention-full=99\n") || strings.Contains(conf, "repo1-type") {
		t.Errorf("fs config:\n%s", conf)
	}
	if spec := h.pgbackrestSpec(); spec.bucket != "" || spec.repoDir != "/var/tmp/bench/pgbr-repo" || spec.wipe[0] != spec.repoDir {
		t.Errorf("fs spec bucket %q repoDir %q wipe %v", spec.bucket, spec.repoDir, spec.wipe)
	}
}

// TestLifeboatPolicyS3 reads the generated policy with Lifeboat's own parsers,
// so a policy Lifeboat would refuse fails here rather than an hour into a run.
func TestLifeboatPolicyS3(t *testing.T) {
	dir := t.TempDir()
	h := s3Harness(dir)
	text := h.lifeboatPolicy()
	path := filepath.Join(dir, "lifeboat.yaml")
	p, err := policy.Parse([]byte(text), path, app.Kinds().Decoders())
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(p.Repositories) != 1 {
		t.Fatalf("repositories: %+v", p.Repositories)
	}
	r := p.Repositories[0]
	if r.AccessKey.Reveal() != "lbbench-abc" || r.SecretKey.Reveal() != "SECRETVALUE" || r.KeyFile != filepath.Join(dir, "lb.key") {
		t.Errorf("repository %+v", r)
	}
	o, err := s3store.ParseURL(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	if o.Bucket != "lifeboat" || o.Prefix != "bench" || o.Endpoint != "https://127.0.0.1:9123" || o.Region != "us-east-1" || !o.PathStyle {
		t.Errorf("url %q parses to %+v", r.URL, o)
	}
	spec := h.lifeboatSpec()
	if spec.bucket != "lifeboat" || spec.repoDir != "" || len(spec.env) != 1 || spec.env[0] != "SSL_CERT_FILE="+filepath.Join(dir, "minio", "ca.pem") {
		t.Errorf("spec bucket %q repoDir %q env %v", spec.bucket, spec.repoDir, spec.env)
	}

	h.minio, h.cfg.storage = nil, storageFS
	p, err = policy.Parse([]byte(h.lifeboatPolicy()), path, app.Kinds().Decoders())
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Repositories[0]; r.URL != "file://"+filepath.Join(dir, "lb-repo") || r.AccessKey != "" {
		t.Errorf("fs repository %+v", r)
	}
	if spec := h.lifeboatSpec(); spec.env != nil || spec.repoDir != filepath.Join(dir, "lb-repo") {
		t.Errorf("fs spec env %v repoDir %q", spec.env, spec.repoDir)
	}
}

// TestWalPushWrapperEnv checks that the wrapper hands its environment to the
// push command (PostgreSQL's archiver has only the server's), quoting values.
func TestWalPushWrapperEnv(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "wrapper.sh")
	want := "/a dir/it's ca.pem"
	push := []string{"sh", "-c", `test "$SSL_CERT_FILE" = "$0"`, want}
	if err := os.WriteFile(script, []byte(walPushWrapper(push, []string{"SSL_CERT_FILE=" + want}, filepath.Join(dir, "log"))), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", shellQuote(script)+" pg_wal/000000010000000000000001 000000010000000000000001")
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("push did not see SSL_CERT_FILE=%q: %v %s", want, err, out)
	}
}

func TestSummariseS3Targets(t *testing.T) {
	ok := func(wall float64) stepResult { return stepResult{Ran: true, OK: true, WallSeconds: wall} }
	runs := []toolResult{
		{Tool: toolPgBackRest, Full: ok(100), Incr: ok(40), Restore: ok(60)},
		{Tool: toolLifeboat, Full: ok(90), Incr: ok(50), Restore: ok(60)},
	}
	byName := map[string]ratioLine{}
	for _, l := range summarise(runs, storageS3) {
		byName[l.Name] = l
	}
	for name, pass := range map[string]bool{"s3 full backup: wall": true, "s3 incremental: wall": false, "s3 restore: wall": true} {
		l, found := byName[name]
		if !found || !l.Measured || l.Pass != pass || l.Target != 1.0 {
			t.Errorf("%s: %+v, want pass %v against 1.0", name, l, pass)
		}
	}
	if _, found := byName["full backup: wall"]; !found {
		t.Error("S3 summary lost the common targets")
	}
	for _, l := range summarise(runs, storageFS) {
		if strings.HasPrefix(l.Name, "s3 ") {
			t.Errorf("fs summary has %q", l.Name)
		}
	}
}
