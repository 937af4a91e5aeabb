package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

// TestNewLoopback checks what MinIO and both clients rely on: the server
// certificate verifies against the CA alone for every name the tools dial, and
// the key pair loads the way MinIO loads it.
func TestNewLoopback(t *testing.T) {
	now := time.Now()
	c, err := NewLoopback(now, "test")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(c.CA) {
		t.Fatal("CA PEM holds no certificate")
	}
	block, _ := pem.Decode(c.Cert)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("server certificate PEM: %v", block)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.IsCA {
		t.Error("server certificate is a CA")
	}
	for _, name := range []string{"127.0.0.1", "localhost", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("certificate verifies for example.com")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "127.0.0.1", Roots: x509.NewCertPool(), CurrentTime: now}); err == nil {
		t.Error("certificate verifies without the CA")
	}
	if _, err := tls.X509KeyPair(c.Cert, c.Key); err != nil {
		t.Errorf("key pair: %v", err)
	}
	if !strings.HasPrefix(string(c.Key), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("key is not PKCS #8 PEM: %.40q", c.Key)
	}
}
