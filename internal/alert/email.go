package alert

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

// email sends one plain-text mail per message over SMTP.
type email struct {
	addr     string // host:port
	host     string
	mode     string // starttls, tls or none
	username string
	password policy.Secret
	from     *mail.Address
	to       []*mail.Address
	tlsBase  *tls.Config
	timeout  time.Duration
}

func newEmail(a policy.Alert, base *tls.Config, timeout time.Duration) (*email, error) {
	host, _, err := net.SplitHostPort(a.SMTP)
	if err != nil || host == "" {
		return nil, fmt.Errorf("smtp must be the mail server as host:port, not %q", a.SMTP)
	}
	e := &email{addr: a.SMTP, host: host, mode: a.TLS, username: a.Username, password: a.Password,
		tlsBase: base, timeout: timeout}
	switch e.mode {
	case "":
		e.mode = "starttls"
	case "starttls", "tls", "none":
	default:
		return nil, fmt.Errorf("tls must be starttls, tls or none, not %q", a.TLS)
	}
	if (a.Username == "") != (a.Password == "") {
		return nil, errors.New("set both username and password, or neither")
	}
	if e.from, err = mail.ParseAddress(a.From); err != nil {
		return nil, fmt.Errorf("from %q: %w", a.From, err)
	}
	if len(a.To) == 0 {
		return nil, errors.New("to must list at least one address")
	}
	for _, t := range a.To {
		addr, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to %q: %w", t, err)
		}
		e.to = append(e.to, addr)
	}
	return e, nil
}

func (e *email) tlsConfig() *tls.Config {
	c := &tls.Config{}
	if e.tlsBase != nil {
		c = e.tlsBase.Clone()
	}
	c.ServerName = e.host
	return c
}

func (e *email) send(ctx context.Context, m *message) error {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	err := e.exchange(ctx, m)
	// The connection's deadline and the context's expire together; either
	// may be seen first, as an i/o timeout or as a connection closed
	// under the read. Say what happened.
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() == context.DeadlineExceeded) {
		return unreachable(fmt.Errorf("smtp %s: no answer within %s (%v)", e.addr, e.timeout, err))
	}
	return err
}

// exchange is one SMTP session. The connection's deadline is the
// context's, and cancelling the context closes it, so neither a silent
// server nor a daemon shutting down waits on a read.
func (e *email) exchange(ctx context.Context, m *message) error {
	down := func(what string, err error) error {
		return unreachable(fmt.Errorf("smtp %s: %s: %w", e.addr, what, err))
	}
	var conn net.Conn
	var err error
	if e.mode == "tls" {
		conn, err = (&tls.Dialer{Config: e.tlsConfig()}).DialContext(ctx, "tcp", e.addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", e.addr)
	}
	if err != nil {
		return down("connect", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return down("set deadline", err)
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, e.host)
	if err != nil {
		return down("greeting", err)
	}
	defer c.Close()
	if err := c.Hello(heloName(m.Host)); err != nil {
		return down("EHLO", err)
	}
	if e.mode == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return down("STARTTLS", errors.New("the server does not offer STARTTLS; refusing to send in the clear (set tls: none to allow it)"))
		}
		if err := c.StartTLS(e.tlsConfig()); err != nil {
			return down("STARTTLS", err)
		}
	}
	if e.username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return down("AUTH", errors.New("the server does not offer AUTH, but username and password are set"))
		}
		// PlainAuth itself refuses to send the password over a plain
		// connection to anything but localhost.
		if err := c.Auth(smtp.PlainAuth("", e.username, e.password.Reveal(), e.host)); err != nil {
			return down("AUTH", err)
		}
	}
	if err := c.Mail(e.from.Address); err != nil {
		return fmt.Errorf("smtp %s: MAIL FROM: %w", e.addr, err)
	}
	for _, to := range e.to {
		if err := c.Rcpt(to.Address); err != nil {
			return fmt.Errorf("smtp %s: RCPT TO %s: %w", e.addr, to.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp %s: DATA: %w", e.addr, err)
	}
	if _, err := w.Write(e.compose(m)); err != nil {
		return fmt.Errorf("smtp %s: send message: %w", e.addr, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp %s: message refused: %w", e.addr, err)
	}
	// The message is accepted once DATA ends; a failed QUIT does not
	// undo that, and sending again would deliver it twice.
	_ = c.Quit()
	return nil
}

// heloName is the name given in EHLO: the host name when it is one a
// server will take, else localhost as net/smtp would say.
func heloName(host string) string {
	if host == "" || strings.ContainsAny(host, " \r\n<>") {
		return "localhost"
	}
	return host
}

// headerSafe keeps a value on its header line.
var headerSafe = strings.NewReplacer("\r", " ", "\n", " ")

// compose renders the mail: headers and a quoted-printable UTF-8 body, with
// CRLF line ends.
func (e *email) compose(m *message) []byte {
	status := "FIRING"
	if m.Action == resolve {
		status = "RESOLVED"
	}
	label := headerSafe.Replace(m.Problem.Label())
	subject := fmt.Sprintf("[lifeboat] %s: %s", status, label)

	domain := "lifeboat.invalid"
	if _, d, ok := strings.Cut(e.from.Address, "@"); ok && d != "" {
		domain = d
	}
	// Every mail about one occurrence of a problem refers to the same
	// thread id, so mail readers keep the trigger, repeats and resolve
	// together.
	sum := sha256.Sum256([]byte(m.Key + "\x00" + m.Since.UTC().Format(time.RFC3339Nano)))
	thread := fmt.Sprintf("<%s@%s>", hex.EncodeToString(sum[:12]), domain)
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	msgID := fmt.Sprintf("<%d.%s@%s>", m.Time.Unix(), hex.EncodeToString(nonce[:]), domain)

	to := make([]string, len(e.to))
	for i, a := range e.to {
		to[i] = a.String()
	}
	var b bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	header("From", e.from.String())
	header("To", strings.Join(to, ", "))
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", m.Time.Format(time.RFC1123Z))
	header("Message-ID", msgID)
	header("In-Reply-To", thread)
	header("References", thread)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	header("Auto-Submitted", "auto-generated")
	header("X-Lifeboat-Key", headerSafe.Replace(m.Key))
	b.WriteString("\r\n")

	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(emailBody(m, status)))
	_ = qp.Close()
	return b.Bytes()
}

func emailBody(m *message, status string) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	line("%s: %s", status, m.Problem.Label())
	line("%s", m.Problem.Summary)
	line("")
	if m.Problem.Asset != "" {
		line("Asset:    %s", m.Problem.Asset)
	}
	line("Check:    %s", m.Problem.Check)
	if m.Problem.Subject != "" {
		line("Subject:  %s", m.Problem.Subject)
	}
	line("Since:    %s", lifeboat.FormatTime(m.Since))
	if m.Action == resolve {
		line("Resolved: %s (lasted %s)", lifeboat.FormatTime(m.Resolved), span(m.Resolved.Sub(m.Since)))
	} else if m.Repeat > 0 {
		line("Open for: %s (reminder %d)", span(m.Time.Sub(m.Since)), m.Repeat)
	}
	line("Host:     %s", m.Host)
	line("Key:      %s", m.Key)
	line("")
	switch {
	case m.Action == resolve:
		line("The problem is no longer reported by lifeboat check.")
	case m.Every > 0:
		line("Lifeboat sends this again every %s while the problem lasts, and a RESOLVED mail when it clears.", span(m.Every))
	default:
		line("Lifeboat sends a RESOLVED mail when the problem clears.")
	}
	return b.String()
}
