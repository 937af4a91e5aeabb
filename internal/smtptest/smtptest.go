// Package smtptest is a small SMTP server for tests: it accepts mail on a
// loopback port, speaking enough of RFC 5321 for net/smtp (EHLO, STARTTLS,
// AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), and keeps what it got.
// Nothing outside _test.go files may import it.
package smtptest

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is one mail the sink accepted.
type Mail struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // the session was encrypted when DATA came
	User string // who authenticated, "" for nobody
}

// Sink is a small SMTP server, enough of RFC 5321 for net/smtp: EHLO,
// STARTTLS when it has a certificate, AUTH PLAIN when it has users, MAIL,
// RCPT, DATA, RSET, NOOP, QUIT.
type Sink struct {
	t        testing.TB
	ln       net.Listener
	StartTLS *tls.Config       // offered after EHLO when set; set before the first connection
	Users    map[string]string // AUTH PLAIN offered and required when set; set before the first connection

	mu    sync.Mutex
	mails []Mail
	errs  []error
	wg    sync.WaitGroup
}

// New serves SMTP on ln (a new loopback listener when nil) until the test
// ends; a session that breaks the protocol fails the test.
func New(t testing.TB, ln net.Listener) *Sink {
	t.Helper()
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &Sink{t: t, ln: ln}
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

// Addr is the host:port the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Take returns the mails accepted since the last Take.
func (s *Sink) Take() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mails
	s.mails = nil
	return m
}

func (s *Sink) session(conn net.Conn) error {
	_, isTLS := conn.(*tls.Conn)
	tp := textproto.NewConn(conn)
	reply := func(format string, args ...any) error { return tp.PrintfLine(format, args...) }
	if err := reply("220 sink.test ESMTP"); err != nil {
		return err
	}
	var cur Mail
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
			if s.StartTLS != nil && !isTLS {
				ext = append(ext, "STARTTLS")
			}
			if s.Users != nil {
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
			if s.StartTLS == nil || isTLS {
				err = reply("502 no")
				break
			}
			if err := reply("220 go ahead"); err != nil {
				return err
			}
			tc := tls.Server(conn, s.StartTLS)
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
			case s.Users == nil || !strings.EqualFold(mech, "PLAIN") || derr != nil || len(parts) != 3:
				err = reply("504 unsupported")
			case s.Users[parts[1]] != parts[2] || parts[2] == "":
				err = reply("535 5.7.8 authentication failed")
			default:
				user = parts[1]
				err = reply("235 2.7.0 ok")
			}
		case "MAIL":
			switch {
			case !greeted:
				err = reply("503 say EHLO first")
			case s.Users != nil && user == "":
				err = reply("530 5.7.0 authentication required")
			default:
				cur = Mail{From: pathArg(arg)}
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
			cur = Mail{}
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
