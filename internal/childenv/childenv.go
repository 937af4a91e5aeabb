// Package childenv builds the environment of the programs Lifeboat starts
// (hooks, pg_dump, pg_restore, psql, PostgreSQL servers, git): an
// allow-list of this process's variables, never the whole of it. The
// daemon's environment holds storage keys, repository passphrases and
// alert secrets; a child gets none of them unless it is given them by
// name, so a hook, a dump tool or a server running as another OS user
// cannot read them from its environment (or /proc/<pid>/environ).
package childenv

import (
	"os"
	"slices"
	"strings"
)

// base are the variables every child keeps: where programs are, whose
// home, language and time zone, and where temporary files go.
var base = []string{"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME"}

// pgConn are libpq's connection variables (see "Environment Variables" in
// the libpq documentation), PGPASSWORD left out: a password reaches a
// PostgreSQL program through a private file instead (PGPASSFILE), so it
// never sits in an environment that other programs inherit.
var pgConn = []string{
	"PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSFILE", "PGCHANNELBINDING",
	"PGSERVICE", "PGSERVICEFILE", "PGSYSCONFDIR", "PGOPTIONS", "PGAPPNAME", "PGSSLMODE", "PGREQUIRESSL",
	"PGSSLNEGOTIATION", "PGSSLCOMPRESSION", "PGSSLCERT", "PGSSLKEY", "PGSSLCERTMODE", "PGSSLROOTCERT",
	"PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI", "PGREQUIREPEER", "PGSSLMINPROTOCOLVERSION",
	"PGSSLMAXPROTOCOLVERSION", "PGGSSENCMODE", "PGKRBSRVNAME", "PGGSSLIB", "PGGSSDELEGATION",
	"PGCONNECT_TIMEOUT", "PGCLIENTENCODING", "PGTARGETSESSIONATTRS", "PGLOADBALANCEHOSTS",
	"PGREQUIREAUTH", "PGMINPROTOCOLVERSION", "PGMAXPROTOCOLVERSION", "PGDATESTYLE", "PGTZ", "PGGEQO",
}

// Base is the environment every child starts from: PATH, HOME, LANG,
// LANGUAGE, LC_*, TZ, TMPDIR, USER and LOGNAME as this process has them,
// followed by extra ("NAME=value"; a later value of a name wins, as for
// exec). It is never nil: a nil exec.Cmd.Env would mean "inherit all".
func Base(extra ...string) []string {
	env := make([]string, 0, 16+len(extra))
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(base, k) || strings.HasPrefix(k, "LC_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// PG is Base with libpq's connection variables (PGHOST, PGPORT, PGUSER,
// PGSSLMODE, PGSERVICEFILE, ...) kept too, PGPASSWORD left out, for a
// client program that connects where the operator's environment points
// it. extra follows, as for Base.
func PG(extra ...string) []string {
	env := Base()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(pgConn, k) {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// parentOnly are Lifeboat's variables that describe this process's tie
// to the daemon that started it (where to report its result), which no
// child of it shares.
var parentOnly = []string{"LIFEBOAT_RESULT_FD", "LIFEBOAT_SERVE_RUN"}

// Self are the variables, beyond Base, of a child that calls Lifeboat
// back, such as a restored server whose restore_command is lifeboat
// wal-fetch: those the policy refers to by name (policyVars, the ${NAME}s
// it needs to load), Lifeboat's own (LIFEBOAT_*) and the storage SDK's
// (AWS_*, read when a repository gives no keys of its own). Nothing else:
// an alert's secret, say, is not among them. Base's variables are left
// out, so that appending these to the environment of a child running as
// another user keeps that user's HOME.
func Self(policyVars []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(base, k) || strings.HasPrefix(k, "LC_") || slices.Contains(parentOnly, k) {
			continue
		}
		if slices.Contains(policyVars, k) || strings.HasPrefix(k, "LIFEBOAT_") || strings.HasPrefix(k, "AWS_") {
			env = append(env, kv)
		}
	}
	return env
}
