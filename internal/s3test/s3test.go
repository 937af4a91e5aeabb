// Package s3test holds test helpers only: it starts throwaway MinIO servers (a real S3 implementation,
// built by scripts/install-minio.sh) so that storage code is tested against S3 itself, never a mock.
// It also creates users held to IAM policies, among them the roles docs/storage.md gives operators,
// so that what a credential may not do is tested against the store's own policy engine.
// Nothing outside _test.go files may import it.
package s3test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/lifeboat-dr/lifeboat/internal/testenv"
	"github.com/lifeboat-dr/lifeboat/internal/tlscert"
)

const (
	envMinIOBin    = "LIFEBOAT_MINIO_BIN"
	defaultBin     = "/usr/local/lib/lifeboat/minio"
	installCommand = "sudo bash scripts/install-minio.sh (or scripts/install-test-deps.sh)"

	// region is MinIO's default region; requests signed for another would be refused.
	region = "us-east-1"

	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
	logTailLines = 60
	// startAttempts bounds retries when a port picked as free was taken before MinIO bound it.
	startAttempts = 3
)

// Bin returns the MinIO binary: $LIFEBOAT_MINIO_BIN, else /usr/local/lib/lifeboat/minio. When it is
// missing the test is skipped with the install command, unless CI is set or LIFEBOAT_TEST_DISALLOW_SKIP=1:
// there a skip would hide untested code, so the test fails.
func Bin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(envMinIOBin); p != "" {
		if !testenv.IsExecutable(p) {
			t.Fatalf("s3test: %s=%s is not an executable file", envMinIOBin, p)
		}
		return p
	}
	if testenv.IsExecutable(defaultBin) {
		return defaultBin
	}
	reason := fmt.Sprintf("MinIO not found at %s (set %s, or install it: %s)", defaultBin, envMinIOBin, installCommand)
	testenv.SkipOrFail(t, "s3test", reason)
	return ""
}

// Server is a running MinIO server owned by one test, listening on 127.0.0.1 over plain HTTP, or
// over HTTPS when started by StartTLS.
type Server struct {
	// Endpoint is the S3 endpoint URL, http://127.0.0.1:PORT (https:// with TLS).
	Endpoint string
	// CAFile is the PEM file of the CA that signed the server's certificate; "" without TLS.
	CAFile string
	// Region is the region to sign requests for (us-east-1).
	Region string
	// AccessKey and SecretKey are the server's root credentials, random per server.
	AccessKey, SecretKey string
	// DataDir is the server's single drive; objects are stored below it in MinIO's own layout.
	DataDir string
}

// Start runs a MinIO server in single-drive mode with its data in a temporary directory, waits until it
// is ready and stops it when the test ends. Its output goes to a log file whose tail is logged when the
// test fails.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start with the server on HTTPS, its certificate signed by a throwaway CA (CAFile):
// what a client meets at AWS, where uploads and their checksums travel differently than over HTTP.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, useTLS bool) *Server {
	t.Helper()
	bin := Bin(t)
	dir := t.TempDir()
	if useTLS {
		certs, err := tlscert.NewLoopback(time.Now(), "s3test")
		if err != nil {
			t.Fatalf("s3test: %v", err)
		}
		certDir := filepath.Join(dir, "certs")
		for name, data := range map[string][]byte{"public.crt": certs.Cert, "private.key": certs.Key, "ca.pem": certs.CA} {
			if err := os.MkdirAll(certDir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(certDir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := &Server{
		Region:    region,
		AccessKey: "lifeboat-" + rand.Text()[:12],
		SecretKey: rand.Text(),
		DataDir:   filepath.Join(dir, "data"),
	}
	if useTLS {
		// Outside the certs directory: MinIO would read a CA file there as one more server certificate.
		s.CAFile = filepath.Join(dir, "ca.pem")
		if err := os.Rename(filepath.Join(dir, "certs", "ca.pem"), s.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	for attempt := 1; ; attempt++ {
		err := s.start(t, bin, dir, attempt)
		if err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) || attempt == startAttempts {
			t.Fatalf("s3test: %v", err)
		}
		t.Logf("s3test: %v; retrying with other ports", err)
	}
}

// errPortTaken marks a start that failed because another process holds one of the chosen ports.
var errPortTaken = errors.New("port taken")

// start makes one attempt to run the server on fresh ports. On success it registers the cleanup that
// stops the server; on failure the server is already stopped.
func (s *Server) start(t testing.TB, bin, dir string, attempt int) error {
	t.Helper()
	port, consolePort, err := freePorts()
	if err != nil {
		return err
	}
	scheme := "http"
	if s.CAFile != "" {
		scheme = "https"
	}
	s.Endpoint = scheme + "://127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(dir, fmt.Sprintf("minio-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor

	cmd := exec.Command(bin, "server",
		"--address", "127.0.0.1:"+strconv.Itoa(port),
		"--console-address", "127.0.0.1:"+strconv.Itoa(consolePort),
		// The default, ~/.minio/certs, may not be writable by the test user (HOME may be root's).
		"--certs-dir", filepath.Join(dir, "certs"),
		s.DataDir)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		// The temporary directory may sit on the root drive, which MinIO otherwise refuses to use.
		"MINIO_CI_CD=on",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	if err := s.waitReady(exited, &waitErr); err != nil {
		stop()
		out := tail(logPath, logTailLines)
		if strings.Contains(out, "address already in use") {
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return fmt.Errorf("minio server on %s: %w\nserver output (last %d lines of %s):\n%s", s.Endpoint, err, logTailLines, logPath, out)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("s3test: MinIO output (last %d lines of %s):\n%s", logTailLines, logPath, tail(logPath, logTailLines))
		}
	})
	return nil
}

// waitReady polls the readiness probe until it answers 200, then proves with a signed request that
// the server answering is ours: another test's server could hold the port if ours failed to bind it.
func (s *Server) waitReady(exited <-chan struct{}, waitErr *error) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	hc := s.httpClient(2 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("exited before it was ready: %v", *waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v", readyTimeout)
		case <-time.After(50 * time.Millisecond):
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Endpoint+"/minio/health/ready", nil)
		if err != nil {
			return fmt.Errorf("readiness request: %w", err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
	}
	// MinIO can answer the probe before it accepts requests ("Server not
	// initialized yet", 503): keep asking until the signed call succeeds.
	client := s.newClient()
	for {
		_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
		if err == nil {
			break
		}
		select {
		case <-exited:
			return fmt.Errorf("%w: exited while another process answered on its port: %v", errPortTaken, *waitErr)
		default:
		}
		if strings.Contains(err.Error(), "InvalidAccessKeyId") {
			// Another test's server took the port between freePorts and
			// this server's bind, and answered with its own credentials:
			// this one is on its way out, and the caller retries on
			// another port once it has gone.
			select {
			case <-exited:
				return fmt.Errorf("%w: exited while another server answered on its port: %v", errPortTaken, *waitErr)
			case <-time.After(5 * time.Second):
			}
		}
		if !strings.Contains(err.Error(), "XMinioServerNotInitialized") || ctx.Err() != nil {
			return fmt.Errorf("ready, but a signed ListBuckets failed: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// freePorts picks two distinct unused TCP ports on 127.0.0.1 (API and console). Both listeners stay
// open until both ports are known, so the kernel cannot hand out the same port twice.
func freePorts() (int, int, error) {
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("pick a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], nil
}

// tail returns the last n lines of the file at path, or a note saying why it could not be read.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read server log: %v)", err)
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
	if err := sc.Err(); err != nil {
		lines = append(lines, fmt.Sprintf("(reading server log: %v)", err))
	}
	return strings.Join(lines, "\n")
}

// Client returns an S3 client for the server with path-style addressing and the root credentials.
// It is built from explicit options only, so the developer's ~/.aws files and AWS_* variables play no part.
func (s *Server) Client(t testing.TB) *s3.Client {
	t.Helper()
	return s.newClient()
}

func (s *Server) newClient() *s3.Client {
	return s.clientAs(s.AccessKey, s.SecretKey)
}

func (s *Server) clientAs(accessKey, secretKey string) *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		HTTPClient:   s.httpClient(0),
	})
}

// httpClient is an HTTP client that trusts the server's CA.
func (s *Server) httpClient(timeout time.Duration) *http.Client {
	hc := &http.Client{Timeout: timeout}
	if s.CAFile != "" {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(s.CAFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	return hc
}

// CreateBucket creates a bucket on the server. objectLock enables S3 Object Lock at creation, which
// also turns versioning on; it cannot be enabled later on MinIO.
func (s *Server) CreateBucket(t testing.TB, name string, objectLock bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in := &s3.CreateBucketInput{Bucket: aws.String(name)}
	if objectLock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := s.newClient().CreateBucket(ctx, in); err != nil {
		t.Fatalf("s3test: create bucket %q (object lock %v): %v", name, objectLock, err)
	}
}

// EnableVersioning turns versioning on for a bucket, so that an overwritten or deleted object's
// earlier versions stay stored (docs/storage.md makes it the default for every repository bucket).
func (s *Server) EnableVersioning(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.newClient().PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(bucket),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}})
	if err != nil {
		t.Fatalf("s3test: enable versioning of %q: %v", bucket, err)
	}
}
