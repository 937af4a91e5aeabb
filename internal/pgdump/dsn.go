package pgdump

import (
	"fmt"
	"net/url"
	"strings"
)

// connParams is a libpq connection string taken apart, in the order it was
// written, so that it can be put together again with another database or
// without its password. Both forms libpq accepts are read: keyword/value
// ("host=/run/postgresql dbname=app") and URI ("postgresql://u@h/app").
type connParams struct {
	keys, values []string
}

// parseDSN reads a libpq connection string. The error never quotes the
// string, which may hold a password.
func parseDSN(dsn string) (*connParams, error) {
	lower := strings.ToLower(dsn)
	if strings.HasPrefix(lower, "postgresql://") || strings.HasPrefix(lower, "postgres://") {
		return parseURIDSN(dsn)
	}
	return parseKeywordDSN(dsn)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// parseKeywordDSN follows libpq's conninfo_parse: keyword, optional space,
// "=", optional space, then a value that is either single-quoted (a
// backslash escapes any character) or runs to the next space (a backslash
// escapes the next character).
func parseKeywordDSN(s string) (*connParams, error) {
	p := &connParams{}
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return p, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("connection string: missing \"=\" after %q", key)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				i++
				if c == '\\' && i < len(s) {
					v.WriteByte(s[i])
					i++
					continue
				}
				if c == '\'' {
					closed = true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("connection string: unterminated quoted value of %q", key)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		p.set(key, v.String())
	}
}

// parseURIDSN follows libpq's conninfo_uri_parse_options:
// scheme://[user[:password]@][host[:port][,host[:port]...]][/dbname][?key=value&...],
// every part percent-decoded. Several hosts become comma-separated host
// and port values, as libpq itself turns them into.
func parseURIDSN(s string) (*connParams, error) {
	p := &connParams{}
	rest := s[strings.Index(s, "://")+3:]
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		user, pass, hasPass := strings.Cut(authority[:at], ":")
		if err := p.setDecoded("user", user); err != nil {
			return nil, err
		}
		if hasPass {
			if err := p.setDecoded("password", pass); err != nil {
				return nil, err
			}
		}
		authority = authority[at+1:]
	}
	if authority != "" {
		var hosts, ports []string
		anyPort := false
		for _, hp := range strings.Split(authority, ",") {
			host, port := hp, ""
			if strings.HasPrefix(hp, "[") {
				close := strings.IndexByte(hp, ']')
				if close < 0 {
					return nil, fmt.Errorf("connection URI: unterminated IPv6 address")
				}
				host, port = hp[1:close], strings.TrimPrefix(hp[close+1:], ":")
			} else if h, pt, ok := strings.Cut(hp, ":"); ok {
				host, port = h, pt
			}
			h, err := url.PathUnescape(host)
			if err != nil {
				return nil, fmt.Errorf("connection URI: host: %v", err)
			}
			hosts, ports = append(hosts, h), append(ports, port)
			anyPort = anyPort || port != ""
		}
		p.set("host", strings.Join(hosts, ","))
		if anyPort {
			p.set("port", strings.Join(ports, ","))
		}
	}
	path, query, _ := strings.Cut(tail, "?")
	if db := strings.TrimPrefix(path, "/"); db != "" {
		if err := p.setDecoded("dbname", db); err != nil {
			return nil, err
		}
	}
	if query != "" {
		for _, kv := range strings.Split(query, "&") {
			if kv == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("connection URI: parameter %q without a value", k)
			}
			key, err := url.QueryUnescape(k)
			if err != nil {
				return nil, fmt.Errorf("connection URI: parameter name: %v", err)
			}
			// libpq's JDBC-compatible spelling.
			if key == "ssl" && v == "true" {
				key, v = "sslmode", "require"
			}
			if err := p.setDecoded(key, v); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func (p *connParams) setDecoded(key, raw string) error {
	v, err := url.PathUnescape(raw)
	if err != nil {
		return fmt.Errorf("connection URI: %s: %v", key, err)
	}
	p.set(key, v)
	return nil
}

// set replaces key's value, or adds it; libpq, too, keeps the last value
// written for a key.
func (p *connParams) set(key, value string) {
	for i, k := range p.keys {
		if k == key {
			p.values[i] = value
			return
		}
	}
	p.keys, p.values = append(p.keys, key), append(p.values, value)
}

func (p *connParams) get(key string) string {
	for i, k := range p.keys {
		if k == key {
			return p.values[i]
		}
	}
	return ""
}

// with returns a copy with key set to value.
func (p *connParams) with(key, value string) *connParams {
	c := &connParams{keys: append([]string(nil), p.keys...), values: append([]string(nil), p.values...)}
	c.set(key, value)
	return c
}

// withoutPassword returns a copy without the password and the password
// itself: the password travels to the PostgreSQL tools in PGPASSWORD,
// which only the same user can read, instead of on a command line that
// every user can see in ps.
func (p *connParams) withoutPassword() (*connParams, string) {
	c := &connParams{}
	pass := ""
	for i, k := range p.keys {
		if k == "password" {
			pass = p.values[i]
			continue
		}
		c.keys, c.values = append(c.keys, k), append(c.values, p.values[i])
	}
	return c, pass
}

// String renders the parameters in keyword/value form, every value quoted.
func (p *connParams) String() string {
	var b strings.Builder
	for i, k := range p.keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteString("='")
		v := strings.ReplaceAll(p.values[i], `\`, `\\`)
		b.WriteString(strings.ReplaceAll(v, `'`, `\'`))
		b.WriteByte('\'')
	}
	return b.String()
}

// display names the server and database for messages: host, port, user
// and database only, so no secret can show, whatever the string held.
func (p *connParams) display() string {
	var parts []string
	for _, k := range []string{"host", "hostaddr", "port", "user", "dbname"} {
		if v := p.get(k); v != "" {
			if strings.ContainsAny(v, " '\\") {
				v = "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `'`, `\'`) + "'"
			}
			parts = append(parts, k+"="+v)
		}
	}
	if len(parts) == 0 {
		return "the default server (libpq defaults and PG* variables)"
	}
	return strings.Join(parts, " ")
}
