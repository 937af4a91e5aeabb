package pgdump

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/childenv"
)

// toolConn is how the PostgreSQL programs (pg_dump, pg_dumpall,
// pg_restore, psql) reach the server without a secret on their command
// line, which every local user can read in ps and /proc/<pid>/cmdline, or
// in an environment they pass on: the password goes into a password file
// (passfile) and sslpassword into a connection service file
// (PGSERVICEFILE, service=), both 0600 in a private directory removed by
// Close. libpq has no variable for sslpassword, so a service file is the
// one way to give it other than the command line.
type toolConn struct {
	conn *connParams // what the programs get in --dbname: no secret
	env  []string    // their environment: childenv.PG and the files
	dir  string      // "" when no file was needed
}

// serviceName is the section of the private service file.
const serviceName = "lifeboat"

// newToolConn takes the secrets out of p. The password is p's, else the
// PGPASSWORD of this process (which the programs do not inherit).
func newToolConn(p *connParams) (*toolConn, error) {
	t := &toolConn{conn: &connParams{}}
	password, hasPassword := "", false
	sslPassword, hasSSLPassword := "", false
	for i, k := range p.keys {
		switch k {
		case "password":
			password, hasPassword = p.values[i], true
		case "sslpassword":
			sslPassword, hasSSLPassword = p.values[i], true
		default:
			t.conn.keys, t.conn.values = append(t.conn.keys, k), append(t.conn.values, p.values[i])
		}
	}
	if !hasPassword {
		password, hasPassword = os.LookupEnv("PGPASSWORD")
	}
	var extra []string
	if hasSSLPassword && sslPassword != "" {
		if t.conn.get("service") != "" {
			return nil, asUsage("the connection string gives both service= and sslpassword: put sslpassword in that service's entry of the service file, so that it stays off pg_dump's command line")
		}
		if sslPassword != strings.TrimSpace(sslPassword) || strings.ContainsAny(sslPassword, "\x00\n\r") {
			return nil, asUsage("the connection string's sslpassword starts or ends with a space or holds a line break, which a service file cannot hold: change the key's passphrase")
		}
	}
	if (hasPassword && password != "") || (hasSSLPassword && sslPassword != "") {
		dir, err := os.MkdirTemp("", "lifeboat-pgconn-")
		if err != nil {
			return nil, fmt.Errorf("private directory for the connection's secrets: %w", err)
		}
		t.dir = dir
		if hasPassword && password != "" {
			if strings.ContainsAny(password, "\x00\n\r") {
				// A password file holds one password a line; this one
				// goes in the programs' environment, which only this user
				// (and root) can read.
				extra = append(extra, "PGPASSWORD="+password)
			} else {
				pf := filepath.Join(dir, "pgpass")
				if err := writePrivate(pf, "*:*:*:*:"+passfileEscape(password)+"\n"); err != nil {
					t.Close()
					return nil, err
				}
				t.conn.set("passfile", pf)
			}
		}
		if hasSSLPassword && sslPassword != "" {
			sf := filepath.Join(dir, "pg_service.conf")
			if err := writePrivate(sf, "["+serviceName+"]\nsslpassword="+sslPassword+"\n"); err != nil {
				t.Close()
				return nil, err
			}
			t.conn.set("service", serviceName)
			extra = append(extra, "PGSERVICEFILE="+sf)
		}
	}
	t.env = childenv.PG(extra...)
	return t, nil
}

// asUsage marks a connection string the programs cannot be given safely.
func asUsage(msg string) error { return usagef("%s", msg) }

// Close removes the files holding the secrets.
func (t *toolConn) Close() {
	if t != nil && t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

// passfileEscape escapes a password for a .pgpass line, where ':' and '\'
// are written with a backslash.
func passfileEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s)
}

// writePrivate creates path (which must not exist) with mode 0600.
func writePrivate(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
