package alert_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/smtptest"
	"github.com/lifeboat-dr/lifeboat/internal/tlscert"
)

func emailAlert(addr, mode string) policy.Alert {
	return policy.Alert{Kind: policy.AlertEmail, Name: "oncall-mail", SMTP: addr, TLS: mode,
		From: "Lifeboat <lifeboat@example.com>", To: []string{"dba@example.com", "Ops Team <ops@example.com>"},
		Repeat: policy.Duration(4 * time.Hour)}
}

// readMail parses a smtptest.Mail mail and decodes its quoted-printable body.
func readMail(t testing.TB, m smtptest.Mail) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
	if err != nil {
		t.Fatalf("mail does not parse: %v\n%s", err, m.Data)
	}
	if cte := msg.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return msg, string(body)
}

func TestEmailPlain(t *testing.T) {
	sink := smtptest.New(t, nil)
	c := newClock()
	n := newNotifier(t, []policy.Alert{emailAlert(sink.Addr(), "none")}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	ctx := context.Background()
	p := alert.Problem{Asset: "ledger", Check: "drill", Summary: "drill failed: check “ledger has rows” returned false"}
	if err := n.Update(ctx, []alert.Problem{p}); err != nil {
		t.Fatal(err)
	}
	c.add(90 * time.Minute)
	if err := n.Update(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mails := sink.Take()
	if len(mails) != 2 {
		t.Fatalf("sink got %d mails, want trigger and resolve", len(mails))
	}
	var refs []string
	for i, want := range []string{"FIRING", "RESOLVED"} {
		m := mails[i]
		if m.From != "lifeboat@example.com" || strings.Join(m.To, ",") != "dba@example.com,ops@example.com" || m.TLS {
			t.Errorf("envelope %+v", m)
		}
		msg, body := readMail(t, m)
		h := msg.Header
		if got := h.Get("Subject"); got != "[lifeboat] "+want+": ledger drill" {
			t.Errorf("Subject %q", got)
		}
		if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "lifeboat@example.com" || from.Name != "Lifeboat" {
			t.Errorf("From %q: %v", h.Get("From"), err)
		}
		if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[1].Name != "Ops Team" {
			t.Errorf("To %q: %v", h.Get("To"), err)
		}
		if d, err := h.Date(); err != nil || !d.Equal(c.now().Add(time.Duration(i-1)*90*time.Minute)) {
			t.Errorf("Date %q: %v", h.Get("Date"), err)
		}
		if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
			t.Errorf("Message-ID %q", id)
		}
		if mt, params, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || mt != "text/plain" || params["charset"] != "utf-8" {
			t.Errorf("Content-Type %q", h.Get("Content-Type"))
		}
		if h.Get("Auto-Submitted") != "auto-generated" || h.Get("X-Lifeboat-Key") != "lifeboat/ledger/drill" {
			t.Errorf("headers %v", h)
		}
		refs = append(refs, h.Get("References"))
		for _, w := range []string{want + ": ledger drill", p.Summary, "Host:     db1.example.com", "Key:      lifeboat/ledger/drill"} {
			if !strings.Contains(body, w) {
				t.Errorf("mail %d body lacks %q:\n%s", i, w, body)
			}
		}
	}
	if refs[0] == "" || refs[0] != refs[1] {
		t.Errorf("trigger and resolve are not one thread: %q", refs)
	}
}

func TestEmailAuth(t *testing.T) {
	sink := smtptest.New(t, nil)
	sink.Users = map[string]string{"lifeboat": "s3cr3t-pw"}
	c := newClock()
	a := emailAlert(sink.Addr(), "none")
	a.Username, a.Password = "lifeboat", "s3cr3t-pw"
	n := newNotifier(t, []policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	if m := sink.Take(); len(m) != 1 || m[0].User != "lifeboat" {
		t.Fatalf("sink got %+v, want one mail from an authenticated session", m)
	}

	a.Password = "wrong-password-xyz"
	n = newNotifier(t, []policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	err := n.Update(context.Background(), []alert.Problem{staleBackup})
	if err == nil || !strings.Contains(err.Error(), "oncall-mail (email)") || !strings.Contains(err.Error(), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-password-xyz") {
		t.Errorf("error leaks the password: %v", err)
	}
	if m := sink.Take(); len(m) != 0 {
		t.Errorf("sink took %d mails without authentication", len(m))
	}
}

// loopbackTLS makes a server certificate for 127.0.0.1 and a client
// configuration that trusts it.
func loopbackTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	lb, err := tlscert.NewLoopback(time.Now(), "lifeboat alert test")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(lb.Cert, lb.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(lb.CA) {
		t.Fatal("no CA")
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}, &tls.Config{RootCAs: roots}
}

func TestEmailStartTLS(t *testing.T) {
	serverTLS, clientTLS := loopbackTLS(t)
	sink := smtptest.New(t, nil)
	sink.StartTLS = serverTLS
	sink.Users = map[string]string{"lifeboat": "s3cr3t-pw"}
	a := emailAlert(sink.Addr(), "starttls")
	a.Username, a.Password = "lifeboat", "s3cr3t-pw"
	n, err := alert.New([]policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now, TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	m := sink.Take()
	if len(m) != 1 || !m[0].TLS || m[0].User != "lifeboat" {
		t.Fatalf("sink got %+v, want one mail over STARTTLS, authenticated", m)
	}

	// Without the CA the certificate is refused, and nothing is sent.
	n, err = alert.New([]policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	if m := sink.Take(); len(m) != 0 {
		t.Errorf("sent despite an untrusted certificate")
	}
}

// TestEmailStartTLSRequired: with tls starttls, a server that offers no
// STARTTLS gets nothing, not the mail in the clear.
func TestEmailStartTLSRequired(t *testing.T) {
	sink := smtptest.New(t, nil)
	n := newNotifier(t, []policy.Alert{emailAlert(sink.Addr(), "starttls")}, filepath.Join(t.TempDir(), alert.StateFile), newClock(), nil)
	err := n.Update(context.Background(), []alert.Problem{staleBackup})
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("error %v, want a refusal to send in the clear", err)
	}
	if m := sink.Take(); len(m) != 0 {
		t.Errorf("sink got %d mails in the clear", len(m))
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := loopbackTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	sink := smtptest.New(t, ln)
	n, err := alert.New([]policy.Alert{emailAlert(sink.Addr(), "tls")}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now, TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	if m := sink.Take(); len(m) != 1 || !m[0].TLS {
		t.Fatalf("sink got %+v, want one mail over TLS", m)
	}
}

// TestEmailHungServer: a server that accepts and never greets costs the
// timeout, not the daemon.
func TestEmailHungServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn)) // until the client gives up
	}()
	t.Cleanup(func() { ln.Close(); conns.Wait() })
	n, err := alert.New([]policy.Alert{emailAlert(ln.Addr().String(), "starttls")}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = n.Update(context.Background(), []alert.Problem{staleBackup})
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), "no answer within 300ms") {
		t.Errorf("error %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("update took %s with a 300ms timeout", took)
	}
}
