package main

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	s3store "github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// TestLifeboatPolicyCopy reads the -copy policy with Lifeboat's own parser:
// a state directory, a copy repository with its own key, listed second by
// the asset, in a directory or (with -storage s3) a second bucket.
func TestLifeboatPolicyCopy(t *testing.T) {
	dir := t.TempDir()
	h := s3Harness(dir)
	h.minio, h.cfg.storage, h.cfg.copy = nil, storageFS, true
	path := filepath.Join(dir, "lifeboat.yaml")
	text := h.lifeboatPolicy()
	p, err := policy.Parse([]byte(text), path, app.Kinds().Decoders())
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if p.StateDir != filepath.Join(dir, "lb-state") {
		t.Errorf("state_dir %q", p.StateDir)
	}
	if len(p.Repositories) != 2 {
		t.Fatalf("repositories: %+v", p.Repositories)
	}
	if r := p.Repositories[0]; r.Name != "primary" || r.URL != "file://"+filepath.Join(dir, "lb-repo") || r.KeyFile != filepath.Join(dir, "lb.key") {
		t.Errorf("primary %+v", r)
	}
	if r := p.Repositories[1]; r.Name != "dr" || r.URL != "file://"+filepath.Join(dir, "lb-copy") || r.KeyFile != filepath.Join(dir, "lb-copy.key") {
		t.Errorf("copy %+v", r)
	}
	a, err := p.Asset(stanza)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Repositories, []string{"primary", "dr"}) {
		t.Errorf("asset repositories %v", a.Repositories)
	}

	spec := h.lifeboatSpec()
	for _, args := range [][]string{spec.full, spec.incr} {
		if !slices.Contains(args, "--no-copy") {
			t.Errorf("backup %v copies its snapshot, which pgBackRest's single repository does not pay for", args)
		}
	}
	for _, want := range []string{"lb-repo", "lb.key", "lb-copy", "lb-copy.key", "lb-state"} {
		if !slices.Contains(spec.wipe, filepath.Join(dir, want)) {
			t.Errorf("wipe %v lacks %s", spec.wipe, want)
		}
	}
	if !slices.Contains(spec.mkdirs, filepath.Join(dir, "lb-state")) {
		t.Errorf("mkdirs %v lacks the state directory", spec.mkdirs)
	}
	if want := []string{"-c", path, "status", stanza, "--json"}; !slices.Equal(spec.copyStatus, want) {
		t.Errorf("copyStatus %v, want %v", spec.copyStatus, want)
	}
	if spec.copyBucket != "" {
		t.Errorf("fs copy has bucket %q", spec.copyBucket)
	}

	// With -storage s3 the copy is a second bucket of the same MinIO.
	h = s3Harness(dir)
	h.cfg.copy = true
	text = h.lifeboatPolicy()
	if p, err = policy.Parse([]byte(text), path, app.Kinds().Decoders()); err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if len(p.Repositories) != 2 {
		t.Fatalf("repositories: %+v", p.Repositories)
	}
	for i, bucket := range []string{"lifeboat", "lifeboat-dr"} {
		r := p.Repositories[i]
		o, err := s3store.ParseURL(r.URL)
		if err != nil {
			t.Fatal(err)
		}
		if o.Bucket != bucket || o.Prefix != "bench" || o.Endpoint != "https://127.0.0.1:9123" || r.SecretKey.Reveal() != "SECRETVALUE" {
			t.Errorf("repository %s: url %q parses to %+v", r.Name, r.URL, o)
		}
	}
	if spec := h.lifeboatSpec(); spec.copyBucket != "lifeboat-dr" || slices.Contains(spec.wipe, filepath.Join(dir, "lb-copy")) {
		t.Errorf("s3 spec copyBucket %q wipe %v", spec.copyBucket, spec.wipe)
	}
	if got := h.buckets(); !slices.Equal(got, []string{"pgbackrest", "lifeboat", "lifeboat-dr"}) {
		t.Errorf("buckets %v", got)
	}

	// Without -copy nothing of the above appears.
	h.cfg.copy = false
	text = h.lifeboatPolicy()
	if strings.Contains(text, "state_dir") || strings.Contains(text, "name: dr") {
		t.Errorf("policy without -copy:\n%s", text)
	}
	if spec := h.lifeboatSpec(); slices.Contains(spec.full, "--no-copy") || spec.copyStatus != nil || spec.copyBucket != "" {
		t.Errorf("spec without -copy: full %v status %v bucket %q", spec.full, spec.copyStatus, spec.copyBucket)
	}
	if got := h.buckets(); !slices.Equal(got, []string{"pgbackrest", "lifeboat"}) {
		t.Errorf("buckets %v", got)
	}
}

// statusSample is `lifeboat status bench --json` while the copy trails by
// two WAL files, one of them still queued.
const statusSample = `[
  {
    "asset": "bench",
    "repository": "primary",
    "role": "primary",
    "snapshots": 1,
    "last_snapshot": "3f9a1c2e5b6d7e8f",
    "last_snapshot_time": "2026-11-23T09:00:12Z",
    "newest_wal": "00000001000000A4000000C1",
    "newest_wal_time": "2026-11-23T09:14:02Z"
  },
  {
    "asset": "bench",
    "repository": "dr",
    "role": "copy",
    "snapshots": 0,
    "newest_wal": "00000001000000A4000000BF",
    "newest_wal_time": "2026-11-23T09:13:51Z",
    "lag": {
      "wal_files": 2,
      "wal_bytes": 12582912,
      "wal_seconds": 3.25,
      "snapshots": 1,
      "queue": {
        "dir": "/var/tmp/lifeboat-bench/lb-state/copy-queue/dr",
        "entries": 1,
        "bytes": 6291456,
        "oldest": "2026-11-23T09:14:02Z",
        "last_error": "put wal/bench/00000001000000A4000000C0: no space left on device",
        "last_error_time": "2026-11-23T09:14:03Z"
      }
    }
  }
]
`

func TestParseCopyLag(t *testing.T) {
	got, err := parseCopyLag([]byte(statusSample), "dr")
	if err != nil {
		t.Fatal(err)
	}
	want := copyLagSample{WALFiles: 2, WALSeconds: 3.25, QueueEntries: 1,
		QueueError: "put wal/bench/00000001000000A4000000C0: no space left on device"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.caughtUp() {
		t.Error("a copy two files behind reads as caught up")
	}

	// A copy this host never queued for has no queue: nothing queued.
	noQueue := `[{"repository":"primary","role":"primary"},{"repository":"dr","role":"copy","lag":{"wal_files":0,"wal_bytes":0,"wal_seconds":0,"snapshots":1}}]`
	if got, err := parseCopyLag([]byte(noQueue), "dr"); err != nil || got != (copyLagSample{}) || !got.caughtUp() {
		t.Errorf("no queue: %+v, %v", got, err)
	}

	for name, tc := range map[string]struct{ out, want string }{
		"not JSON":      {"status: no such asset\n", "parse status JSON"},
		"no copy row":   {`[{"repository":"primary","role":"primary"}]`, "no row for repository dr"},
		"row error":     {`[{"repository":"dr","role":"copy","error":"repository dr: open: permission denied","lag":{"wal_files":0}}]`, "permission denied"},
		"no lag":        {`[{"repository":"dr","role":"copy"}]`, "no lag reported"},
		"dr is primary": {`[{"repository":"dr","role":"primary"}]`, `role "primary"`},
		"empty":         {"", "parse status JSON"},
	} {
		if _, err := parseCopyLag([]byte(tc.out), "dr"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestCopyLagSummary(t *testing.T) {
	var r copyLagResult
	r.Target = copyTargetWALFiles
	for _, n := range []int{0, 1, 0, 2, 1} {
		r.add(copyLagSample{WALFiles: n, WALSeconds: float64(n) * 1.5, QueueEntries: n}, 100*time.Millisecond, nil)
	}
	r.add(copyLagSample{}, time.Second, errors.New("status: exit 1"))
	cs := &copySampler{res: &r, stop: make(chan struct{})}
	got := cs.finish()
	if got.Samples != 6 || got.FailedSamples != 1 || got.MaxWALFiles != 2 || got.MedianWALFiles != 1 ||
		got.MaxWALSeconds != 3 || got.MaxQueueEntries != 2 || got.LastSampleError != "status: exit 1" {
		t.Errorf("summary %+v", got)
	}
	if m := medianInts([]int{3, 0, 1, 0}); m != 0.5 {
		t.Errorf("median of an even count = %v, want 0.5", m)
	}
}

func TestCopyLagLine(t *testing.T) {
	res := func(maxFiles int, measured, caught bool) *copyLagResult {
		return &copyLagResult{PgbenchClients: 4, PgbenchRate: 400, Samples: 30, MaxWALFiles: maxFiles, MedianWALFiles: 0.5,
			MaxWALSeconds: 2.5, CaughtUp: caught, CatchUpSeconds: 1.2, Target: 1, Measured: measured,
			Pass: measured && maxFiles <= 1}
	}
	runs := []toolResult{
		{Tool: toolPgBackRest},
		{Tool: toolLifeboat, Copy: res(1, true, true)},
	}
	l, ok := copyLagLine(runs)
	want := "copy lag under pgbench -c 4 -R 400: max 1 WAL files (target <= 1), median 0.5, max age 2.50 s, caught up 1.20 s after the archiver PASS"
	if !ok || l.Text != want || !l.Pass || !l.Measured {
		t.Errorf("line %+v\nwant text %q", l, want)
	}

	// The worst run decides.
	runs = append(runs, toolResult{Tool: toolLifeboat, Copy: res(3, true, false)})
	l, _ = copyLagLine(runs)
	if l.Pass || l.Lifeboat != 3 || !strings.Contains(l.Text, "max 3 WAL files") ||
		!strings.Contains(l.Text, "NOT caught up") || !strings.HasSuffix(l.Text, " FAIL") {
		t.Errorf("worst run: %+v", l)
	}

	nm := res(0, false, false)
	nm.FailedSamples, nm.LastSampleError, nm.PgbenchRate = 30, "status: exit 1", 0
	l, _ = copyLagLine([]toolResult{{Tool: toolLifeboat, Copy: nm}})
	if l.Measured || l.Pass || !strings.HasPrefix(l.Text, "copy lag under pgbench -c 4: n/a") || !strings.HasSuffix(l.Text, "NOT MEASURED") {
		t.Errorf("unmeasured: %+v", l)
	}

	if _, ok := copyLagLine([]toolResult{{Tool: toolLifeboat}}); ok {
		t.Error("a line without -copy")
	}
	for _, l := range summarise([]toolResult{{Tool: toolLifeboat}}, storageFS) {
		if l.Name == "copy lag lifeboat" {
			t.Error("summary has a copy line without -copy")
		}
	}
}
