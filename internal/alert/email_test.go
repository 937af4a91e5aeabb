package alert_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/tlscert"
)

// sunk is one mail the sink accepted.
type sunk struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the session was encrypted when DATA came
	User string // who authenticated, "" for nobody
}

// smtpSink is a small SMTP server, enough of RFC 5321 for net/smtp: EHLO,
// STARTTLS when it has a certificate, AUTH PLAIN when it has users, MAIL,
// RCPT, DATA, RSET, NOOP, QUIT.
type smtpSink struct {
	t        testing.TB
	ln       net.Listener
	startTLS *tls.Config       // offered after EHLO when set
	users    map[string]string // AUTH PLAIN offered and required when set

	mu    sync.Mutex
	mails []sunk
	errs  []error
	wg    sync.WaitGroup
}

func newSMTPSink(t testing.TB, ln net.Listener) *smtpSink {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &smtpSink{t: t, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				if err := s.session(conn); err != nil && !errors.Is(err, io.EOF) {
					s.mu.Lock()
					s.errs = append(s.errs, err)
					s.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
		for _, err := range s.errs {
			t.Errorf("smtp sink: %v", err)
		}
	})
	return s
}

func (s *smtpSink) addr() string { return s.ln.Addr().String() }

func (s *smtpSink) take() []sunk {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mails
	s.mails = nil
	return m
}

func (s *smtpSink) session(conn net.Conn) error {
	_, isTLS := conn.(*tls.Conn)
	tp := textproto.NewConn(conn)
	reply := func(format string, args ...any) error { return tp.PrintfLine(format, args...) }
	if err := reply("220 sink.test ESMTP"); err != nil {
		return err
	}
	var cur sunk
	var user string
	greeted := false
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return err
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO", "HELO":
			greeted = true
			ext := []string{"sink.test greets " + arg, "8BITMIME"}
			if s.startTLS != nil && !isTLS {
				ext = append(ext, "STARTTLS")
			}
			if s.users != nil {
				ext = append(ext, "AUTH PLAIN")
			}
			for i, e := range ext {
				sep := "-"
				if i == len(ext)-1 {
					sep = " "
				}
				if err := reply("250%s%s", sep, e); err != nil {
					return err
				}
			}
		case "STARTTLS":
			if s.startTLS == nil || isTLS {
				err = reply("502 no")
				break
			}
			if err := reply("220 go ahead"); err != nil {
				return err
			}
			tc := tls.Server(conn, s.startTLS)
			if err := tc.Handshake(); err != nil {
				// The client refusing the certificate is what a test
				// may want; the client side tells.
				return nil
			}
			conn, isTLS, greeted = tc, true, false
			tp = textproto.NewConn(tc)
		case "AUTH":
			mech, resp, _ := strings.Cut(arg, " ")
			raw, derr := base64.StdEncoding.DecodeString(resp)
			parts := strings.Split(string(raw), "\x00")
			switch {
			case s.users == nil || !strings.EqualFold(mech, "PLAIN") || derr != nil || len(parts) != 3:
				err = reply("504 unsupported")
			case s.users[parts[1]] != parts[2] || parts[2] == "":
				err = reply("535 5.7.8 authentication failed")
			default:
				user = parts[1]
				err = reply("235 2.7.0 ok")
			}
		case "MAIL":
			switch {
			case !greeted:
				err = reply("503 say EHLO first")
			case s.users != nil && user == "":
				err = reply("530 5.7.0 authentication required")
			default:
				cur = sunk{From: pathArg(arg)}
				err = reply("250 ok")
			}
		case "RCPT":
			cur.To = append(cur.To, pathArg(arg))
			err = reply("250 ok")
		case "DATA":
			if err := reply("354 go on"); err != nil {
				return err
			}
			data, err := tp.ReadDotBytes()
			if err != nil {
				return err
			}
			cur.Data, cur.TLS, cur.User = data, isTLS, user
			s.mu.Lock()
			s.mails = append(s.mails, cur)
			s.mu.Unlock()
			cur = sunk{}
			err = reply("250 queued")
			if err != nil {
				return err
			}
		case "RSET", "NOOP":
			err = reply("250 ok")
		case "QUIT":
			_ = reply("221 bye")
			return nil
		default:
			err = reply("502 unknown command")
		}
		if err != nil {
			return err
		}
	}
}

// pathArg takes the address out of "FROM:<a@b> BODY=8BITMIME".
func pathArg(arg string) string {
	_, rest, _ := strings.Cut(arg, "<")
	addr, _, _ := strings.Cut(rest, ">")
	return addr
}

func emailAlert(addr, mode string) policy.Alert {
	return policy.Alert{Kind: policy.AlertEmail, Name: "oncall-mail", SMTP: addr, TLS: mode,
		From: "Lifeboat <lifeboat@example.com>", To: []string{"dba@example.com", "Ops Team <ops@example.com>"},
		Repeat: policy.Duration(4 * time.Hour)}
}

// readMail parses a sunk mail and decodes its quoted-printable body.
func readMail(t testing.TB, m sunk) (*mail.Message, string) {
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
	sink := newSMTPSink(t, nil)
	c := newClock()
	n := newNotifier(t, []policy.Alert{emailAlert(sink.addr(), "none")}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	ctx := context.Background()
	p := alert.Problem{Asset: "ledger", Check: "drill", Summary: "drill failed: check “ledger has rows” returned false"}
	if err := n.Update(ctx, []alert.Problem{p}); err != nil {
		t.Fatal(err)
	}
	c.add(90 * time.Minute)
	if err := n.Update(ctx, nil); err != nil {
		t.Fatal(err)
	}
	mails := sink.take()
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
	sink := newSMTPSink(t, nil)
	sink.users = map[string]string{"lifeboat": "s3cr3t-pw"}
	c := newClock()
	a := emailAlert(sink.addr(), "none")
	a.Username, a.Password = "lifeboat", "s3cr3t-pw"
	n := newNotifier(t, []policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile), c, nil)
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	if m := sink.take(); len(m) != 1 || m[0].User != "lifeboat" {
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
	if m := sink.take(); len(m) != 0 {
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
	sink := newSMTPSink(t, nil)
	sink.startTLS = serverTLS
	sink.users = map[string]string{"lifeboat": "s3cr3t-pw"}
	a := emailAlert(sink.addr(), "starttls")
	a.Username, a.Password = "lifeboat", "s3cr3t-pw"
	n, err := alert.New([]policy.Alert{a}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now, TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	m := sink.take()
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
	if m := sink.take(); len(m) != 0 {
		t.Errorf("sent despite an untrusted certificate")
	}
}

// TestEmailStartTLSRequired: with tls starttls, a server that offers no
// STARTTLS gets nothing, not the mail in the clear.
func TestEmailStartTLSRequired(t *testing.T) {
	sink := newSMTPSink(t, nil)
	n := newNotifier(t, []policy.Alert{emailAlert(sink.addr(), "starttls")}, filepath.Join(t.TempDir(), alert.StateFile), newClock(), nil)
	err := n.Update(context.Background(), []alert.Problem{staleBackup})
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("error %v, want a refusal to send in the clear", err)
	}
	if m := sink.take(); len(m) != 0 {
		t.Errorf("sink got %d mails in the clear", len(m))
	}
}

func TestEmailImplicitTLS(t *testing.T) {
	serverTLS, clientTLS := loopbackTLS(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverTLS)
	if err != nil {
		t.Fatal(err)
	}
	sink := newSMTPSink(t, ln)
	n, err := alert.New([]policy.Alert{emailAlert(sink.addr(), "tls")}, filepath.Join(t.TempDir(), alert.StateFile),
		alert.Options{Host: "db1.example.com", Now: newClock().now, TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Update(context.Background(), []alert.Problem{staleBackup}); err != nil {
		t.Fatal(err)
	}
	if m := sink.take(); len(m) != 1 || !m[0].TLS {
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
