// Package tlscert makes a throwaway certificate authority and a server
// certificate for the loopback addresses, for the S3 servers that tests and
// benchmarks start on 127.0.0.1 over HTTPS.
package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Loopback is a CA and the server certificate it signed for 127.0.0.1, ::1
// and localhost, PEM-encoded.
type Loopback struct {
	CA   []byte // CA certificate, what the clients trust
	Cert []byte // server certificate (MinIO's public.crt)
	Key  []byte // server key, PKCS #8 (MinIO's private.key)
}

// NewLoopback makes a CA and a server certificate valid from an hour
// before now (clock skew) for 30 days.
func NewLoopback(now time.Time, org string) (Loopback, error) {
	var c Loopback
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, fmt.Errorf("generate CA key: %w", err)
	}
	serverKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return c, fmt.Errorf("generate server key: %w", err)
	}
	serial := func() (*big.Int, error) { return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) }
	caSerial, err := serial()
	if err != nil {
		return c, fmt.Errorf("CA serial: %w", err)
	}
	serverSerial, err := serial()
	if err != nil {
		return c, fmt.Errorf("server serial: %w", err)
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(30*24*time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          caSerial,
		Subject:               pkix.Name{CommonName: org + " throwaway CA", Organization: []string{org}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return c, fmt.Errorf("sign CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return c, fmt.Errorf("parse CA certificate: %w", err)
	}
	serverTmpl := &x509.Certificate{
		SerialNumber: serverSerial,
		Subject:      pkix.Name{CommonName: "127.0.0.1", Organization: []string{org}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// "127.0.0.1" as a DNS name too: pgBackRest 2.45 matches the host it
		// dials only against DNS names (and the CN when there are none), so
		// the IP address entry alone fails its check. Go and OpenSSL match
		// an IP host against the IP entries.
		DNSNames:    []string{"localhost", "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	serverDER, err := x509.CreateCertificate(rand.Reader, serverTmpl, caCert, &serverKey.PublicKey, caKey)
	if err != nil {
		return c, fmt.Errorf("sign server certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(serverKey)
	if err != nil {
		return c, fmt.Errorf("encode server key: %w", err)
	}
	c.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	c.Cert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverDER})
	c.Key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return c, nil
}
