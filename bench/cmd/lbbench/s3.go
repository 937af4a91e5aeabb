package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
	"github.com/lifeboat-dr/lifeboat/internal/tlscert"
)

// Storage kinds of the -storage flag.
const (
	storageFS = "fs" // repositories are directories in the bench root
	storageS3 = "s3" // repositories are buckets of a MinIO server on 127.0.0.1, over TLS
)

const (
	// minioRegion is MinIO's default region; both tools sign for it.
	minioRegion = "us-east-1"
	// pgbackrestRepoPath is pgBackRest's repo1-path inside its bucket.
	pgbackrestRepoPath = "/pgbackrest"
	// lifeboatPrefix is the prefix of Lifeboat's repository inside its bucket.
	lifeboatPrefix = "bench"

	minioReadyTimeout = 2 * time.Minute
	minioStopTimeout  = 30 * time.Second
	minioLogTail      = 30
)

// minioServer is the S3 store both tools write to when -storage s3: one
// single-drive MinIO on loopback, serving HTTPS with a certificate signed by a
// throwaway CA, so both tools pay for TLS. Each tool has its own bucket, so
// repository bytes are the sum of that bucket's object sizes.
type minioServer struct {
	Endpoint  string // https://127.0.0.1:PORT
	Port      int
	AccessKey string
	SecretKey string
	CAFile    string // PEM of the CA that signed the server certificate
	DataDir   string
	LogPath   string
	Version   string

	client *s3.Client
	cmd    *exec.Cmd
	exited chan struct{}
	// waitErr is cmd.Wait's result, valid once exited is closed.
	waitErr error
}

// minioDir holds MinIO's data, certificates and the CA file under the bench root.
func (h *harness) minioDir() string { return filepath.Join(h.cfg.root, "minio") }

// startMinIO starts a fresh MinIO (its data directory is wiped first) as the
// bench user, waits until it answers a signed request and creates one bucket
// per selected tool. The caller stops it.
func (h *harness) startMinIO(ctx context.Context) (*minioServer, error) {
	if _, err := os.Stat(h.cfg.minio); err != nil {
		return nil, fmt.Errorf("MinIO binary %s: %w (build it: sudo bash scripts/install-minio.sh, or set -minio)", h.cfg.minio, err)
	}
	dir := h.minioDir()
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("wipe %s: %w", dir, err)
	}
	certsDir := filepath.Join(dir, "certs")
	m := &minioServer{
		AccessKey: "lbbench-" + strings.ToLower(rand.Text()[:12]),
		SecretKey: rand.Text(),
		CAFile:    filepath.Join(dir, "ca.pem"),
		DataDir:   filepath.Join(dir, "data"),
		LogPath:   h.logPath("minio"),
		exited:    make(chan struct{}),
	}
	for _, d := range []string{dir, m.DataDir, certsDir} {
		if err := h.mkdirOwned(d, 0o755); err != nil {
			return nil, err
		}
	}
	certs, err := tlscert.NewLoopback(time.Now(), "lbbench")
	if err != nil {
		return nil, err
	}
	// MinIO runs as the bench user and must read its key; nobody else needs to.
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		{m.CAFile, certs.CA, 0o644},
		{filepath.Join(certsDir, "public.crt"), certs.Cert, 0o644},
		{filepath.Join(certsDir, "private.key"), certs.Key, 0o600},
	} {
		if err := h.writeOwned(f.path, f.data, f.perm); err != nil {
			return nil, err
		}
	}

	out, err := exec.CommandContext(ctx, h.cfg.minio, "--version").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w: %s", h.cfg.minio, err, strings.TrimSpace(string(out)))
	}
	m.Version = firstLine(string(out))
	// A build from source calls itself DEVELOPMENT; the install path
	// (scripts/install-minio.sh) names the pinned module version.
	if real, err := filepath.EvalSymlinks(h.cfg.minio); err == nil {
		m.Version += " (" + real + ")"
	}

	port, err := pgbin.FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := pgbin.FreePort()
	if err != nil {
		return nil, err
	}
	m.Port = port
	m.Endpoint = "https://127.0.0.1:" + strconv.Itoa(port)
	logFile, err := os.OpenFile(m.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create MinIO log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	m.cmd = exec.Command(h.cfg.minio, "server",
		"--address", "127.0.0.1:"+strconv.Itoa(port),
		"--console-address", "127.0.0.1:"+strconv.Itoa(consolePort),
		"--certs-dir", certsDir,
		m.DataDir)
	m.cmd.Env = append(append([]string{}, h.r.env...),
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		// The bench root is usually on the root drive, which MinIO refuses
		// to use outside CI mode.
		"MINIO_CI_CD=on",
		// Not the bench home, which the Lifeboat phase wipes.
		"HOME="+dir,
	)
	m.cmd.Stdout, m.cmd.Stderr = logFile, logFile
	// Its own process group: a Ctrl-C on the terminal reaches the harness,
	// which stops MinIO after the tools, not MinIO under their feet.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: h.cred}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", h.cfg.minio, err)
	}
	go func() {
		m.waitErr = m.cmd.Wait()
		close(m.exited)
	}()

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certs.CA) {
		m.stop()
		return nil, errors.New("MinIO CA: no certificate in the generated PEM")
	}
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}, Timeout: 5 * time.Minute}
	m.client = s3.New(s3.Options{
		Region:       minioRegion,
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
		HTTPClient:   hc,
	})
	if err := m.waitReady(ctx, hc); err != nil {
		m.stop()
		return nil, fmt.Errorf("MinIO on %s: %w\nlast %d lines of %s:\n%s", m.Endpoint, err, minioLogTail, m.LogPath, tailFile(m.LogPath, minioLogTail))
	}
	for _, b := range h.buckets() {
		if _, err := m.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			m.stop()
			return nil, fmt.Errorf("MinIO: create bucket %s: %w", b, err)
		}
	}
	return m, nil
}

// bucketFor names a tool's bucket: the tool's own name.
func bucketFor(tool string) string { return tool }

// lifeboatCopyBucket holds Lifeboat's copy repository with -copy -storage s3:
// a second bucket on the same MinIO, as a second region would be a second
// bucket on another endpoint.
const lifeboatCopyBucket = "lifeboat-dr"

// buckets are the buckets MinIO needs: one per selected tool, and Lifeboat's
// copy with -copy.
func (h *harness) buckets() []string {
	var out []string
	for _, tool := range h.cfg.tools {
		out = append(out, bucketFor(tool))
		if tool == toolLifeboat && h.cfg.copy {
			out = append(out, lifeboatCopyBucket)
		}
	}
	return out
}

// waitReady polls the readiness probe over TLS (which also proves the CA
// works), then waits until a signed ListBuckets succeeds: MinIO can answer the
// probe before it accepts requests, and another server could hold the port if
// ours failed to bind it.
func (m *minioServer) waitReady(ctx context.Context, hc *http.Client) error {
	ctx, cancel := context.WithTimeout(ctx, minioReadyTimeout)
	defer cancel()
	var last error
	for {
		select {
		case <-m.exited:
			return fmt.Errorf("exited before it was ready: %v", m.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v (last error: %v)", minioReadyTimeout, last)
		case <-time.After(100 * time.Millisecond):
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.Endpoint+"/minio/health/ready", nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			last = fmt.Errorf("readiness probe answered %s", resp.Status)
			continue
		}
		if _, err := m.client.ListBuckets(ctx, &s3.ListBucketsInput{}); err != nil {
			last = err
			continue
		}
		return nil
	}
}

// stop asks MinIO to exit and kills it if it does not within minioStopTimeout.
func (m *minioServer) stop() {
	if m == nil || m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.exited:
		return
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(minioStopTimeout):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// bucketBytes sums the sizes of the objects in bucket as ListObjectsV2
// reports them: what the tool stored, without MinIO's own metadata and
// erasure-coding overhead, so it compares with the fs mode's file sizes.
func (m *minioServer) bucketBytes(ctx context.Context, bucket string) (int64, error) {
	var total int64
	p := s3.NewListObjectsV2Paginator(m.client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("list bucket %s: %w", bucket, err)
		}
		for _, o := range page.Contents {
			total += aws.ToInt64(o.Size)
		}
	}
	return total, nil
}

// emptyBucket deletes every object in bucket, so a tool's phase starts from
// an empty repository as it does with -storage fs.
func (m *minioServer) emptyBucket(ctx context.Context, bucket string) error {
	for {
		page, err := m.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
		if err != nil {
			return fmt.Errorf("list bucket %s: %w", bucket, err)
		}
		if len(page.Contents) == 0 {
			return nil
		}
		ids := make([]types.ObjectIdentifier, 0, len(page.Contents))
		for _, o := range page.Contents {
			ids = append(ids, types.ObjectIdentifier{Key: o.Key})
		}
		out, err := m.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{Bucket: aws.String(bucket),
			Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)}})
		if err != nil {
			return fmt.Errorf("empty bucket %s: %w", bucket, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("empty bucket %s: delete %s: %s %s", bucket, aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
}

// lifeboatURL is the url of a Lifeboat repository in bucket for the policy.
func (m *minioServer) lifeboatURL(bucket string) string {
	return fmt.Sprintf("s3://%s/%s?endpoint=%s&region=%s&path_style=true", bucket, lifeboatPrefix, m.Endpoint, minioRegion)
}

// storageInfo says where the repositories were, for the report.
type storageInfo struct {
	Kind         string `json:"kind"` // fs or s3
	Endpoint     string `json:"endpoint,omitempty"`
	MinIOVersion string `json:"minio_version,omitempty"`
	BytesMethod  string `json:"bytes_method"`
}

func (h *harness) storageInfo() storageInfo {
	if h.cfg.storage != storageS3 {
		return storageInfo{Kind: storageFS, BytesMethod: "sum of regular file sizes under the repository directory"}
	}
	st := storageInfo{Kind: storageS3, BytesMethod: "sum of object sizes in the tool's bucket (ListObjectsV2)"}
	if h.minio != nil { // nil with -build-only
		st.Endpoint, st.MinIOVersion = h.minio.Endpoint, h.minio.Version
	}
	return st
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// tailFile returns the last n lines of the file at path, or why it could not be read.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
