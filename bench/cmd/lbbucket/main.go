// Command lbbucket benchmarks incremental backups of a bucket asset: it
// fills a prefix of a MinIO bucket with many objects, backs it up into a
// repository on disk, changes 1 % of the objects, backs it up again, and
// reports what the second backup downloaded and stored next to the first.
//
// The claim it checks: a second snapshot of a prefix in which 1 % of the
// objects changed downloads only the changed objects and stores at most
// 2 % of the bytes the first one stored. Downloads are counted twice: by
// the backup itself (the snapshot's details) and by a proxy between the
// backup and MinIO that counts every GetObject request.
//
//	go run ./bench/cmd/lbbucket                        # 10,000 objects, 2 GiB
//	go run ./bench/cmd/lbbucket -objects 2000 -size 256MiB
//
// It starts its own MinIO (scripts/install-minio.sh installs one at
// /usr/local/lib/lifeboat/minio) on loopback, with its data and the
// repository under -root, and removes both at the end unless -keep.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/bucket"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "lbbucket: %v\n", err)
		os.Exit(1)
	}
}

type config struct {
	root    string
	minio   string
	objects int
	size    int64
	changed float64
	workers int
	keep    bool
	restore bool
	jsonOut string
}

// result is what one run measured.
type result struct {
	Objects          int     `json:"objects"`
	Bytes            int64   `json:"bytes"`
	Changed          int     `json:"changed"`
	FillSeconds      float64 `json:"fill_seconds"`
	FirstSeconds     float64 `json:"first_seconds"`
	FirstGets        int64   `json:"first_gets"`
	FirstStored      int64   `json:"first_bytes_stored"`
	SecondSeconds    float64 `json:"second_seconds"`
	SecondGets       int64   `json:"second_gets"`
	SecondDownloaded int64   `json:"second_downloaded"`
	SecondReused     int64   `json:"second_reused"`
	SecondStored     int64   `json:"second_bytes_stored"`
	StoredRatio      float64 `json:"stored_ratio"`
	RestoreSeconds   float64 `json:"restore_seconds,omitempty"`
	Passed           bool    `json:"passed"`
}

func run(ctx context.Context, args []string) error {
	var cfg config
	fl := flag.NewFlagSet("lbbucket", flag.ContinueOnError)
	fl.StringVar(&cfg.root, "root", "/var/tmp/lifeboat-bench-bucket", "bench root: MinIO data, repository, restores")
	fl.StringVar(&cfg.minio, "minio", "/usr/local/lib/lifeboat/minio", "MinIO server binary")
	fl.IntVar(&cfg.objects, "objects", 10000, "objects in the prefix")
	size := fl.String("size", "2GiB", "total bytes of the objects (KiB, MiB, GiB suffixes)")
	fl.Float64Var(&cfg.changed, "changed", 0.01, "share of the objects rewritten before the second backup")
	fl.IntVar(&cfg.workers, "workers", 8, "objects read at once by the backup")
	fl.BoolVar(&cfg.keep, "keep", false, "keep the bench root")
	fl.BoolVar(&cfg.restore, "restore", false, "also time a restore of the second snapshot to a directory")
	fl.StringVar(&cfg.jsonOut, "json", "", "write the result as JSON to this file")
	if err := fl.Parse(args); err != nil {
		return err
	}
	var err error
	if cfg.size, err = parseSize(*size); err != nil {
		return err
	}
	if err := os.RemoveAll(cfg.root); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.root, 0o700); err != nil {
		return err
	}
	if !cfg.keep {
		defer os.RemoveAll(cfg.root)
	}
	srv, err := startMinIO(ctx, cfg.minio, filepath.Join(cfg.root, "minio"))
	if err != nil {
		return err
	}
	defer srv.stop()
	proxy := newCountingProxy(srv.endpoint)
	defer proxy.close()
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.accessKey, srv.secretKey, "")})
	const bucketName, prefix = "uploads", "prod/"
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucketName)}); err != nil {
		return fmt.Errorf("create bucket: %w", err)
	}
	res := &result{Objects: cfg.objects}
	log := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }

	// Fill the prefix.
	sizes := objectSizes(cfg.objects, cfg.size)
	for _, s := range sizes {
		res.Bytes += s
	}
	start := time.Now()
	if err := putAll(ctx, c, bucketName, prefix, sizes, nil, 1); err != nil {
		return err
	}
	res.FillSeconds = time.Since(start).Seconds()
	log("filled s3://%s/%s: %d objects, %s in %.1fs", bucketName, prefix, cfg.objects, human(res.Bytes), res.FillSeconds)

	r, err := openRepo(ctx, filepath.Join(cfg.root, "repo"))
	if err != nil {
		return err
	}
	loc, err := bucket.ParseLocation(fmt.Sprintf("s3://%s/%s?endpoint=%s&path_style=true", bucketName, prefix, url.QueryEscape(proxy.endpoint)))
	if err != nil {
		return err
	}
	a := &policy.Asset{Name: "uploads", Kind: bucket.KindName,
		Config: &bucket.Config{Location: loc, AccessKey: policy.Secret(srv.accessKey), SecretKey: policy.Secret(srv.secretKey)}}

	first, secs, gets, err := backup(ctx, a, r, proxy, cfg.workers)
	if err != nil {
		return err
	}
	res.FirstSeconds, res.FirstGets, res.FirstStored = secs, gets, first.Stats.BytesStored
	log("first backup:  %.1fs, %d objects downloaded (%d GETs), %s stored", secs, mustInfo(first).Downloaded, gets, human(first.Stats.BytesStored))

	// Rewrite 1 % of the objects with new content, spread over the prefix.
	var changed []int
	step := max(1, int(1/cfg.changed))
	for i := step / 2; i < cfg.objects && len(changed) < int(float64(cfg.objects)*cfg.changed+0.5); i += step {
		changed = append(changed, i)
	}
	res.Changed = len(changed)
	if err := putAll(ctx, c, bucketName, prefix, sizes, changed, 2); err != nil {
		return err
	}
	log("rewrote %d objects", len(changed))

	second, secs, gets, err := backup(ctx, a, r, proxy, cfg.workers)
	if err != nil {
		return err
	}
	info := mustInfo(second)
	res.SecondSeconds, res.SecondGets, res.SecondStored = secs, gets, second.Stats.BytesStored
	res.SecondDownloaded, res.SecondReused = info.Downloaded, info.Reused
	res.StoredRatio = float64(second.Stats.BytesStored) / float64(first.Stats.BytesStored)
	log("second backup: %.1fs, %d objects downloaded (%d GETs), %d unchanged, %s stored (%.2f %% of the first)",
		secs, info.Downloaded, gets, info.Reused, human(second.Stats.BytesStored), 100*res.StoredRatio)
	res.Passed = gets == int64(len(changed)) && info.Downloaded == int64(len(changed)) && res.StoredRatio <= 0.02

	if cfg.restore {
		dir := filepath.Join(cfg.root, "restore")
		start := time.Now()
		if _, err := bucket.NewKind().Restore(ctx, &asset.Restore{Asset: a, Repo: r, Snapshot: second, To: dir, Workers: cfg.workers,
			UID: -1, GID: -1, Log: slog.New(slog.DiscardHandler), Progress: func(asset.Progress) {}}); err != nil {
			return err
		}
		res.RestoreSeconds = time.Since(start).Seconds()
		log("restore to a directory: %.1fs", res.RestoreSeconds)
	}
	if cfg.jsonOut != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if !res.Passed {
		return fmt.Errorf("the second backup downloaded %d objects (%d GETs) of %d changed and stored %.2f %% of the first (at most 2 %%)",
			info.Downloaded, gets, len(changed), 100*res.StoredRatio)
	}
	log("PASS: only the %d changed objects were downloaded; %.2f %% of the first snapshot's bytes stored", len(changed), 100*res.StoredRatio)
	return nil
}

func mustInfo(s *repo.Snapshot) *bucket.Info {
	info, err := bucket.SnapshotInfo(s)
	if err != nil {
		panic(err)
	}
	return info
}

func backup(ctx context.Context, a *policy.Asset, r *repo.Repository, p *countingProxy, workers int) (*repo.Snapshot, float64, int64, error) {
	p.gets.Store(0)
	start := time.Now()
	b := &asset.Backup{Asset: a, Repo: r, Workers: workers, Log: slog.New(slog.DiscardHandler),
		Progress: func(asset.Progress) {}, Warn: func(s string) { fmt.Fprintln(os.Stderr, "warning:", s) }}
	snap, err := bucket.NewKind().Backup(ctx, b)
	if err != nil {
		return nil, 0, 0, err
	}
	return snap, time.Since(start).Seconds(), p.gets.Load(), nil
}

func openRepo(ctx context.Context, dir string) (*repo.Repository, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keyPath := dir + ".key"
	if err := repo.GenerateKeyFile(keyPath); err != nil {
		return nil, err
	}
	sec, err := repo.KeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	be, err := fs.New(dir)
	if err != nil {
		return nil, err
	}
	if _, err := repo.Init(ctx, be, sec, repo.InitOptions{}); err != nil {
		return nil, err
	}
	return repo.Open(ctx, be, sec, nil)
}

// objectSizes spreads total over n objects, sizes uniform between a
// quarter and one and three quarters of the mean, as uploads vary.
func objectSizes(n int, total int64) []int64 {
	rng := mrand.New(mrand.NewPCG(1, 2))
	mean := float64(total) / float64(n)
	sizes := make([]int64, n)
	var sum int64
	for i := range sizes {
		sizes[i] = int64(mean * (0.25 + 1.5*rng.Float64()))
		sum += sizes[i]
	}
	sizes[n-1] = max(0, sizes[n-1]+total-sum)
	return sizes
}

func objectKey(prefix string, i int) string {
	return fmt.Sprintf("%susers/%04d/upload-%05d.bin", prefix, i%997, i)
}

// putAll puts the objects only (all when nil) with random content of
// generation gen.
func putAll(ctx context.Context, c *s3.Client, bucketName, prefix string, sizes []int64, only []int, gen uint64) error {
	idx := only
	if idx == nil {
		idx = make([]int, len(sizes))
		for i := range idx {
			idx[i] = i
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	var done atomic.Int64
	for _, i := range idx {
		g.Go(func() error {
			body := make([]byte, sizes[i])
			var seed [32]byte
			rand.Read(seed[:])
			mrand.NewChaCha8(seed).Read(body)
			_, err := c.PutObject(gctx, &s3.PutObjectInput{Bucket: aws.String(bucketName), Key: aws.String(objectKey(prefix, i)),
				Body: bytes.NewReader(body), ContentType: aws.String("application/octet-stream"),
				Metadata: map[string]string{"generation": strconv.FormatUint(gen, 10)}})
			if n := done.Add(1); n%1000 == 0 {
				fmt.Printf("  %d/%d objects put\n", n, len(idx))
			}
			return err
		})
	}
	return g.Wait()
}

// countingProxy stands between the backup and MinIO and counts the
// GetObject requests (object content), not listings, heads or tags.
type countingProxy struct {
	endpoint string
	srv      *httptest.Server
	gets     atomic.Int64
}

func newCountingProxy(target string) *countingProxy {
	u, _ := url.Parse(target)
	p := &countingProxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host // the signature covers the host the client saw
	}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Query().Get("x-id") == "GetObject" {
			p.gets.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	p.endpoint = p.srv.URL
	return p
}

func (p *countingProxy) close() { p.srv.Close() }

type minio struct {
	endpoint             string
	accessKey, secretKey string
	cmd                  *exec.Cmd
	done                 chan struct{}
}

// startMinIO runs a single-drive MinIO on loopback with its data in dir.
func startMinIO(ctx context.Context, bin, dir string) (*minio, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("MinIO: %w (install it with scripts/install-minio.sh, or give -minio)", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Two free ports, both held until both are known.
	ports := make([]int, 2)
	var ls []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	m := &minio{endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), accessKey: "lbbucket-" + rand.Text()[:8], secretKey: rand.Text(),
		done: make(chan struct{})}
	logf, err := os.Create(filepath.Join(dir, "..", "minio.log"))
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin, "server", "--address", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--console-address", fmt.Sprintf("127.0.0.1:%d", ports[1]), "--certs-dir", filepath.Join(dir, "..", "certs"), filepath.Join(dir, "data"))
	m.cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+m.accessKey, "MINIO_ROOT_PASSWORD="+m.secretKey, "MINIO_BROWSER=off",
		"MINIO_UPDATE=off", "MINIO_CI_CD=on")
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { m.cmd.Wait(); logf.Close(); close(m.done) }()
	deadline := time.Now().Add(time.Minute)
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(m.endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(m.accessKey, m.secretKey, "")})
	for {
		_, err := c.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err == nil {
			return m, nil
		}
		select {
		case <-m.done:
			return nil, errors.New("MinIO exited at start; see minio.log in the bench root")
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("MinIO not ready after a minute: %v", err)
		}
	}
}

func (m *minio) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a number with KiB, MiB or GiB", s)
	}
	return int64(n * float64(mult)), nil
}

func human(n int64) string { return asset.HumanBytes(n) }
