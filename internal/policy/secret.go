package policy

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// redacted stands in for a secret wherever one would be printed.
const redacted = "**redacted**"

// Secret is a string that must not leak: it prints, formats, logs and
// serialises as **redacted**, so a policy can be logged or dumped without
// exposing it. Reveal returns the value for the code that needs it.
//
// Only an exported field of type Secret is safe when its enclosing struct
// is printed: fmt cannot call methods on unexported fields.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer, for %#v.
func (s Secret) GoString() string { return strconv.Quote(redacted) }

// Format implements fmt.Formatter so that every verb, including %x and %q
// which would otherwise encode the raw string, prints the placeholder.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		_, _ = io.WriteString(f, strconv.Quote(redacted))
	case 'v':
		if f.Flag('#') {
			_, _ = io.WriteString(f, s.GoString())
			return
		}
		_, _ = io.WriteString(f, redacted)
	default:
		_, _ = io.WriteString(f, redacted)
	}
}

// MarshalText implements encoding.TextMarshaler; YAML and other text
// encoders use it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// MarshalJSON implements json.Marshaler.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(redacted)), nil }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// RedactDSN returns a PostgreSQL connection string fit for messages and
// logs: the password in a postgres:// URL's user info, and password or
// sslpassword parameters in either form, are replaced by **redacted**.
// A keyword/value string it cannot parse is redacted whole, since it
// cannot tell where a password would end.
func RedactDSN(dsn string) string {
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgres://") || strings.HasPrefix(lower, "postgresql://") {
		return redactURLDSN(dsn)
	}
	out, ok := redactKeywordDSN(dsn)
	if !ok {
		return redacted
	}
	return out
}

func isPasswordKey(k string) bool { return k == "password" || k == "sslpassword" }

// redactURLDSN works on the text rather than through net/url so that it
// copes with what url.Parse rejects (several hosts, unescaped characters)
// and changes nothing but the secrets.
func redactURLDSN(dsn string) string {
	scheme := strings.Index(dsn, "://") + 3
	rest := dsn[scheme:]
	authEnd := strings.IndexAny(rest, "/?#")
	if authEnd < 0 {
		authEnd = len(rest)
	}
	var b strings.Builder
	b.WriteString(dsn[:scheme])
	auth := rest[:authEnd]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		user := auth[:at]
		if colon := strings.IndexByte(user, ':'); colon >= 0 {
			user = user[:colon+1] + redacted
		}
		auth = user + auth[at:]
	}
	b.WriteString(auth)
	rest = rest[authEnd:]

	q := strings.IndexByte(rest, '?')
	if q < 0 {
		b.WriteString(rest)
		return b.String()
	}
	b.WriteString(rest[:q+1])
	query, fragment, hasFragment := strings.Cut(rest[q+1:], "#")
	params := strings.Split(query, "&")
	for i, kv := range params {
		if k, _, ok := strings.Cut(kv, "="); ok && isPasswordKey(strings.ToLower(k)) {
			params[i] = k + "=" + redacted
		}
	}
	b.WriteString(strings.Join(params, "&"))
	if hasFragment {
		b.WriteString("#" + fragment)
	}
	return b.String()
}

// redactKeywordDSN scans libpq's "key = value key2='quoted \' value'" form
// and replaces password values, keeping everything else byte for byte.
func redactKeywordDSN(dsn string) (string, bool) {
	var b strings.Builder
	i := 0
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for {
		start := i
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i == len(dsn) {
			b.WriteString(dsn[start:])
			return b.String(), true
		}
		keyStart := i
		for i < len(dsn) && dsn[i] != '=' && !isSpace(dsn[i]) {
			i++
		}
		key := dsn[keyStart:i]
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if key == "" || i == len(dsn) || dsn[i] != '=' {
			return "", false
		}
		i++
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		valStart := i
		if i < len(dsn) && dsn[i] == '\'' {
			i++
			for i < len(dsn) && dsn[i] != '\'' {
				if dsn[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(dsn) {
				return "", false
			}
			i++
		} else {
			for i < len(dsn) && !isSpace(dsn[i]) {
				if dsn[i] == '\\' {
					i++
				}
				i++
			}
			if i > len(dsn) {
				return "", false
			}
		}
		b.WriteString(dsn[start:valStart])
		if isPasswordKey(key) {
			b.WriteString(redacted)
		} else {
			b.WriteString(dsn[valStart:i])
		}
	}
}
