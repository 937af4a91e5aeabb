package s3test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The few MinIO admin API calls the tests need, spoken directly rather than through
// github.com/minio/madmin-go: that client drags in some forty modules (minio-go, prometheus,
// gopsutil, ethtool, msgp, ...) for three HTTP requests. The requests are the ones madmin-go
// v3.0.109 sends to the pinned MinIO; the server is the judge of whether they are right.

const adminPrefix = "/minio/admin/v3/"

// CreateUser creates the canned policy policyName from policyJSON, a user with the given keys,
// and attaches the policy to the user, using the root credentials. Requests made with
// ClientAs(accessKey, secretKey) are then allowed exactly what the policy allows.
func (s *Server) CreateUser(t testing.TB, accessKey, secretKey, policyName, policyJSON string) {
	t.Helper()
	// Generous: with many servers started by parallel tests on two cores, an IAM call may wait.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// MinIO can answer an attach with XMinioAdminNoSuchPolicy for a policy it has just stored:
	// an IAM reload that started before the add can replace its cache with the older listing,
	// and the policy then stays unknown until the next periodic reload, minutes later. Adding
	// the policy and the user again is idempotent and puts them back, so the three steps are
	// repeated together until the attach is accepted.
	for {
		err := s.addCannedPolicy(ctx, policyName, policyJSON)
		if err == nil {
			err = s.addUser(ctx, accessKey, secretKey)
		}
		if err == nil {
			err = s.attachPolicy(ctx, accessKey, policyName)
		}
		if err == nil {
			return
		}
		if !errors.Is(err, errPolicyNotVisible) {
			t.Fatalf("s3test: %v", err)
		}
		t.Logf("s3test: adding policy %q again: %v", policyName, err)
		select {
		case <-ctx.Done():
			t.Fatalf("s3test: %v (gave up: %v)", err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ClientAs returns an S3 client for the server that signs with the given credentials (a user made by
// CreateUser) instead of the root ones. Like Client, it ignores ~/.aws and AWS_* variables.
func (s *Server) ClientAs(t testing.TB, accessKey, secretKey string) *s3.Client {
	t.Helper()
	return s.clientAs(accessKey, secretKey)
}

// addCannedPolicy stores a named IAM policy. MinIO parses it and refuses what its policy engine
// does not know (an unknown action or condition key), so a refusal here is a finding about the
// policy text, not about the helper.
func (s *Server) addCannedPolicy(ctx context.Context, name, policyJSON string) error {
	q := url.Values{"name": {name}}
	if err := s.admin(ctx, http.MethodPut, "add-canned-policy", q, []byte(policyJSON)); err != nil {
		return fmt.Errorf("add policy %q: %w", name, err)
	}
	return nil
}

// addUser creates an enabled user. MinIO wants the secret key encrypted with the root secret key.
func (s *Server) addUser(ctx context.Context, accessKey, secretKey string) error {
	req, err := json.Marshal(struct {
		SecretKey string `json:"secretKey"`
		Status    string `json:"status"`
	}{secretKey, "enabled"})
	if err != nil {
		return fmt.Errorf("add user %q: %w", accessKey, err)
	}
	body, err := encryptAdminData(s.SecretKey, req)
	if err != nil {
		return fmt.Errorf("add user %q: %w", accessKey, err)
	}
	if err := s.admin(ctx, http.MethodPut, "add-user", url.Values{"accessKey": {accessKey}}, body); err != nil {
		return fmt.Errorf("add user %q: %w", accessKey, err)
	}
	return nil
}

// attachPolicy attaches a canned policy to a user of MinIO's built-in identity provider.
func (s *Server) attachPolicy(ctx context.Context, user, policyName string) error {
	req, err := json.Marshal(struct {
		Policies []string `json:"policies"`
		User     string   `json:"user"`
	}{[]string{policyName}, user})
	if err != nil {
		return fmt.Errorf("attach policy %q to %q: %w", policyName, user, err)
	}
	body, err := encryptAdminData(s.SecretKey, req)
	if err != nil {
		return fmt.Errorf("attach policy %q to %q: %w", policyName, user, err)
	}
	if err := s.admin(ctx, http.MethodPost, "idp/builtin/policy/attach", nil, body); err != nil {
		return fmt.Errorf("attach policy %q to %q: %w", policyName, user, err)
	}
	return nil
}

// admin sends one admin API request signed (SigV4, service s3) with the root credentials and
// turns any answer but 2xx into an error carrying MinIO's message. MinIO serves S3 requests
// before its IAM subsystem is up and answers admin calls 503 XMinioServerNotInitialized
// meanwhile, so that answer is retried until ctx ends.
func (s *Server) admin(ctx context.Context, method, path string, query url.Values, body []byte) error {
	for {
		err := s.adminOnce(ctx, method, path, query, body)
		if !errors.Is(err, errNotInitialized) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// errNotInitialized marks an admin call made before the server finished initializing.
var errNotInitialized = errors.New("server not initialized yet")

// errPolicyNotVisible marks an attach that MinIO refused for a policy it had just stored
// (XMinioAdminNoSuchPolicy); CreateUser stores the policy again and retries.
var errPolicyNotVisible = errors.New("policy not visible yet")

func (s *Server) adminOnce(ctx context.Context, method, path string, query url.Values, body []byte) error {
	u := s.Endpoint + adminPrefix + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	// MinIO refuses encrypted bodies of any other type, lest they be read as form data.
	req.Header.Set("Content-Type", "application/octet-stream")
	creds := aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, payloadHash, "s3", s.Region, time.Now()); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	resp, err := s.httpClient(30 * time.Second).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(msg), "XMinioServerNotInitialized") {
		return fmt.Errorf("%s %s: %w", method, path, errNotInitialized)
	}
	if resp.StatusCode == http.StatusNotFound && strings.Contains(string(msg), "XMinioAdminNoSuchPolicy") {
		return fmt.Errorf("%s %s: %w: %s", method, path, errPolicyNotVisible, strings.TrimSpace(string(msg)))
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// Parameters of the admin API's body encryption in its PBKDF2/AES-GCM variant (madmin-go's
// EncryptData with algorithm id 2): salt || id || nonce || sio stream, the stream cut into
// fragments of at most sioBufSize plaintext bytes.
const (
	adminSaltSize  = 32
	adminAlgPBKDF2 = 0x02
	adminPBKDF2Its = 8192
	sioNonceSize   = 8
	sioBufSize     = 1 << 14
	sioFinalFlag   = 0x80
)

// encryptAdminData encrypts an admin request body with password (the root secret key). Bodies here
// are small JSON documents, so the stream is always a single, final fragment: its nonce carries
// sequence number 1 (0 is spent on the header tag) and its associated data is the final flag
// followed by the header tag.
func encryptAdminData(password string, data []byte) ([]byte, error) {
	if len(data) > sioBufSize {
		return nil, fmt.Errorf("admin request body of %d bytes is larger than one fragment (%d)", len(data), sioBufSize)
	}
	salt := make([]byte, adminSaltSize)
	nonce := make([]byte, sioNonceSize)
	rand.Read(salt)
	rand.Read(nonce)
	key, err := pbkdf2.Key(sha256.New, password, salt, adminPBKDF2Its, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	seqNonce := func(seq uint32) []byte {
		n := make([]byte, aead.NonceSize())
		copy(n, nonce)
		binary.LittleEndian.PutUint32(n[aead.NonceSize()-4:], seq)
		return n
	}
	ad := append([]byte{sioFinalFlag}, aead.Seal(nil, seqNonce(0), nil, nil)...)
	out := make([]byte, 0, adminSaltSize+1+sioNonceSize+len(data)+aead.Overhead())
	out = append(out, salt...)
	out = append(out, adminAlgPBKDF2)
	out = append(out, nonce...)
	return aead.Seal(out, seqNonce(1), data, ad), nil
}
