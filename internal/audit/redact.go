package audit

import (
	"regexp"
	"strings"
)

// Redacted replaces a secret.
const Redacted = "[REDACTED]"

var (
	// scheme://user:password@host
	urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@`)
	// password=..., in a libpq DSN, a query string or an environment
	// assignment; quoted DSN values may hold spaces.
	keyValue = regexp.MustCompile(`(?i)((?:^|[^A-Za-z0-9])(?:[A-Za-z_]*(?:password|passwd|passphrase|secret|token|access_key|api_key|apikey|routing_key|private_key)[A-Za-z_]*|pwd)\s*[=:]\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,]*)`)
	// PEM private keys, age and OpenSSH secret keys.
	keyBlock = regexp.MustCompile(`(?s)-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)|AGE-SECRET-KEY-1[0-9A-Z]+`)
	// command-line flags whose value is a secret
	secretFlag = regexp.MustCompile(`(?i)^--?[a-z0-9-]*(password|passphrase|secret|token|private-key)[a-z0-9-]*$`)
)

// Redactor removes secrets from what an event records: the values the
// policy holds as secrets (passphrases, storage keys, key files'
// contents), passwords in URLs and DSNs, secret-named keys and flags, and
// private key material.
type Redactor struct {
	secrets []string
}

// NewRedactor makes a redactor that also removes every one of secrets
// (values shorter than 4 bytes are left: they would redact ordinary
// words).
func NewRedactor(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if s = strings.TrimSpace(s); len(s) >= 4 {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

// String removes the secrets from s.
func (r *Redactor) String(s string) string {
	for _, sec := range r.secrets {
		s = strings.ReplaceAll(s, sec, Redacted)
	}
	s = keyBlock.ReplaceAllString(s, Redacted)
	s = urlPassword.ReplaceAllString(s, "${1}"+Redacted+"@")
	s = keyValue.ReplaceAllString(s, "${1}"+Redacted)
	return s
}

// Args removes the secrets from a command line, including the value of a
// flag named for a secret (--password X, --token=X).
func (r *Redactor) Args(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if i > 0 && secretFlag.MatchString(args[i-1]) && !strings.HasPrefix(a, "-") {
			out[i] = Redacted
			continue
		}
		if name, _, ok := strings.Cut(a, "="); ok && secretFlag.MatchString(name) {
			out[i] = name + "=" + Redacted
			continue
		}
		out[i] = r.String(a)
	}
	return out
}

// Event removes the secrets from what an event records.
func (r *Redactor) Event(e *Event) {
	e.Args = r.Args(e.Args)
	e.Error = r.String(e.Error)
	for k, v := range e.Details {
		e.Details[k] = r.String(v)
	}
}
