package pgbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestLogTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pg.log")
	log := `2026-11-23 16:31:00.118 UTC [123] LOG:  starting point-in-time recovery to 2026-11-23 16:30:58.1+00
2026-11-23 16:31:04.250 UTC [123] LOG:  redo done at 5/2C000600 system usage: CPU: user: 1.00 s
2026-11-23 16:31:05.000 UTC [123] LOG:  redo done at 5/2C000700
2026-11-23 17:31:05.000 CET [123] LOG:  checkpoint complete
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		marker string
		want   time.Time
		ok     bool
	}{
		{"redo done at", time.Date(2026, 11, 23, 16, 31, 4, 250_000_000, time.UTC), true},
		{"starting point-in-time", time.Date(2026, 11, 23, 16, 31, 0, 118_000_000, time.UTC), true},
		{"database system is ready", time.Time{}, false},
		{"checkpoint complete", time.Time{}, false}, // not written in UTC: not trusted
	} {
		got, ok := LogTime(path, tc.marker)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("LogTime(%q) = %v, %v; want %v, %v", tc.marker, got, ok, tc.want, tc.ok)
		}
	}
	if _, ok := LogTime(filepath.Join(t.TempDir(), "missing"), "redo"); ok {
		t.Error("LogTime found a line in a missing file")
	}
}

func TestLogErrorsAndTail(t *testing.T) {
	s := &Server{LogFile: filepath.Join(t.TempDir(), "pg.log")}
	if got := s.logHint(0); got != "" {
		t.Errorf("logHint of a missing log = %q", got)
	}
	old := "2026-01-01 00:00:00.000 UTC [1] FATAL:  an old start\n"
	log := old + `2026-01-01 00:00:01.000 UTC [2] LOG:  starting PostgreSQL
2026-01-01 00:00:01.100 UTC [2] ERROR:  one
2026-01-01 00:00:01.200 UTC [2] FATAL:  two
2026-01-01 00:00:01.300 UTC [2] PANIC:  three
2026-01-01 00:00:01.400 UTC [2] LOG:  database system is shut down
`
	if err := os.WriteFile(s.LogFile, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := s.logHint(int64(len(old))), " (server log: ERROR:  one | FATAL:  two | PANIC:  three)"; got != want {
		t.Errorf("logHint = %q, want %q", got, want)
	}
	if got := s.logErrors(int64(len(old)), 5, "FATAL:"); len(got) != 1 || got[0] != "FATAL:  two" {
		t.Errorf("logErrors(FATAL) = %q", got)
	}
	if got := s.logErrors(0, 1, "FATAL:"); len(got) != 1 || got[0] != "FATAL:  two" {
		t.Errorf("logErrors(FATAL, 1) = %q, want the last", got)
	}
	if got := s.LogTail(2); !strings.HasSuffix(got, "PANIC:  three\n2026-01-01 00:00:01.400 UTC [2] LOG:  database system is shut down") ||
		strings.Count(got, "\n") != 1 {
		t.Errorf("LogTail(2) = %q", got)
	}
}

func TestQuoting(t *testing.T) {
	for _, tc := range []struct{ in, conf, shell string }{
		{"on", "'on'", "'on'"},
		{"", "''", "''"},
		{`cp %p /a\b/%f`, `'cp %p /a\\b/%f'`, `'cp %p /a\b/%f'`},
		{`it's`, `'it''s'`, `'it'\''s'`},
	} {
		if got := QuoteConf(tc.in); got != tc.conf {
			t.Errorf("QuoteConf(%q) = %q, want %q", tc.in, got, tc.conf)
		}
		if got := shellQuote(tc.in); got != tc.shell {
			t.Errorf("shellQuote(%q) = %q, want %q", tc.in, got, tc.shell)
		}
	}
	for name, ok := range map[string]bool{"work_mem": true, "pg_stat_statements.max": true, "Work_Mem2": true,
		"": false, "2pc": false, "work mem": false, "a=b": false, "x\ny": false} {
		if err := CheckSettingName(name); (err == nil) != ok {
			t.Errorf("CheckSettingName(%q) = %v", name, err)
		}
	}
	if _, err := confLine("cluster_name", "a\nb"); err == nil {
		t.Error("confLine accepted a value with a line break")
	}
}

func TestDSN(t *testing.T) {
	s := &Server{SocketDir: "/tmp/pgs123", Port: 5433}
	if got, want := s.DSN("app"), "host=/tmp/pgs123 port=5433 user=postgres dbname=app sslmode=disable"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	s = &Server{SocketDir: `/tmp/a b`, Port: 5433, User: `o'neil`}
	for _, db := range []string{`it's \ "odd"`, "", "app"} {
		cfg, err := pgx.ParseConfig(s.DSN(db))
		if err != nil {
			t.Fatalf("parse %q: %v", s.DSN(db), err)
		}
		if cfg.Host != s.SocketDir || cfg.Port != 5433 || cfg.User != s.User || cfg.Database != db || cfg.TLSConfig != nil {
			t.Errorf("DSN %q parses to host %q port %d user %q database %q tls %v", s.DSN(db), cfg.Host, cfg.Port, cfg.User, cfg.Database, cfg.TLSConfig)
		}
	}
	if got := strings.Join((&Server{SocketDir: "/s", Port: 1}).ClientArgs(), " "); got != "-h /s -p 1 -U postgres" {
		t.Errorf("ClientArgs = %q", got)
	}
}

func TestOptions(t *testing.T) {
	s := &Server{SocketDir: "/tmp/s k", Port: 5433, Settings: map[string]string{"hot_standby": "off", "log_timezone": "Europe/Paris",
		"cluster_name": `it's`}}
	got := s.options()
	for _, want := range []string{"-c 'port=5433'", "-c 'listen_addresses='", "-c 'unix_socket_directories=/tmp/s k'",
		"-c 'logging_collector=off'", "-c 'log_line_prefix=%m [%p] '", "-c 'hot_standby=off'", `-c 'cluster_name=it'\''s'`,
		"-c 'log_timezone=Europe/Paris'"} {
		if !strings.Contains(got, want) {
			t.Errorf("options() = %s\nlacks %s", got, want)
		}
	}
	if strings.Contains(got, "UTC") {
		t.Errorf("options() = %s: a setting given did not win over the default", got)
	}
}
