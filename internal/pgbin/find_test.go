package pgbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeMachine lays out PostgreSQL installations made of shell scripts that
// print a version, and a finder that sees only them.
type fakeMachine struct {
	t    *testing.T
	root string
	env  map[string]string
	path map[string]string // program -> its path on PATH
	conf string            // pg_config --bindir
}

func newFakeMachine(t *testing.T) *fakeMachine {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &fakeMachine{t: t, root: root, env: map[string]string{}, path: map[string]string{}}
}

// install writes programs reporting version into dir (relative to the
// machine's root) and returns its path.
func (m *fakeMachine) install(dir, version string, programs ...string) string {
	m.t.Helper()
	d := filepath.Join(m.root, dir)
	if err := os.MkdirAll(d, 0o755); err != nil {
		m.t.Fatal(err)
	}
	for _, p := range programs {
		script := fmt.Sprintf("#!/bin/sh\necho '%s (PostgreSQL) %s'\n", p, version)
		if err := os.WriteFile(filepath.Join(d, p), []byte(script), 0o755); err != nil {
			m.t.Fatal(err)
		}
	}
	return d
}

func (m *fakeMachine) finder() finder {
	return finder{
		getenv: func(k string) string { return m.env[k] },
		libDir: filepath.Join(m.root, "lib"),
		lookPath: func(name string) (string, error) {
			if p, ok := m.path[name]; ok {
				return p, nil
			}
			return "", errors.New("not on PATH")
		},
		pgConfig: func(context.Context) string { return m.conf },
	}
}

func TestFind(t *testing.T) {
	server := []string{"postgres", "initdb", "pg_ctl"}
	for _, tc := range []struct {
		name  string
		setup func(m *fakeMachine)
		major int
		want  string // directory relative to the root, or "" for an error
		// wantErr are parts of the error's message; notFound whether it is
		// ErrNotFound.
		wantErr  []string
		notFound bool
	}{
		{
			name: "Debian layout",
			setup: func(m *fakeMachine) {
				m.install("lib/14/bin", "14.11", server...)
				m.install("lib/15/bin", "15.6", server...)
			},
			major: 14, want: "lib/14/bin",
		},
		{
			name: "LIFEBOAT_PG_BIN of the version wins",
			setup: func(m *fakeMachine) {
				m.install("lib/15/bin", "15.6", server...)
				m.env[EnvBin] = m.install("own/bin", "15.7", server...)
			},
			major: 15, want: "own/bin",
		},
		{
			name: "LIFEBOAT_PG_BIN of another version is passed over",
			setup: func(m *fakeMachine) {
				m.install("lib/14/bin", "14.11", server...)
				m.env[EnvBin] = m.install("own/bin", "15.7", server...)
			},
			major: 14, want: "lib/14/bin",
		},
		{
			name: "LIFEBOAT_PG_BIN that does not exist is an error",
			setup: func(m *fakeMachine) {
				m.install("lib/15/bin", "15.6", server...)
				m.env[EnvBin] = filepath.Join(m.root, "typo")
			},
			major: 15, wantErr: []string{"$LIFEBOAT_PG_BIN=", "typo is not a directory"},
		},
		{
			name: "PATH",
			setup: func(m *fakeMachine) {
				m.install("lib/15/bin", "15.6", server...)
				m.path["postgres"] = filepath.Join(m.install("opt/pg16/bin", "16.2", server...), "postgres")
			},
			major: 16, want: "opt/pg16/bin",
		},
		{
			name: "PATH through a symbolic link",
			setup: func(m *fakeMachine) {
				dir := m.install("opt/pg16/bin", "16.2", server...)
				link := filepath.Join(m.root, "usr-local-bin")
				os.Mkdir(link, 0o755)
				if err := os.Symlink(filepath.Join(dir, "postgres"), filepath.Join(link, "postgres")); err != nil {
					t.Fatal(err)
				}
				m.path["postgres"] = filepath.Join(link, "postgres")
			},
			major: 16, want: "opt/pg16/bin",
		},
		{
			name:  "pg_config",
			setup: func(m *fakeMachine) { m.conf = m.install("pgconf/bin", "17.0", server...) },
			major: 17, want: "pgconf/bin",
		},
		{
			name: "any version: the override first",
			setup: func(m *fakeMachine) {
				m.install("lib/16/bin", "16.2", server...)
				m.env[EnvBin] = m.install("own/bin", "13.9", server...)
			},
			major: 0, want: "own/bin",
		},
		{
			name: "any version: the newest of the Debian layout",
			setup: func(m *fakeMachine) {
				m.install("lib/9.6/bin", "9.6.24", server...) // not a major number of the layout
				m.install("lib/13/bin", "13.9", server...)
				m.install("lib/16/bin", "16.2", server...)
				m.install("lib/17/bin", "17.0", "psql") // client programs only
				m.conf = m.install("pgconf/bin", "15.0", server...)
			},
			major: 0, want: "lib/16/bin",
		},
		{
			name: "missing version: every place looked in is named",
			setup: func(m *fakeMachine) {
				m.install("lib/15/bin", "15.6", server...)
				m.env[EnvBin] = m.install("own/bin", "15.7", server...)
				m.conf = filepath.Join(m.root, "lib/15/bin") // the same directory: named once
			},
			major: 14, notFound: true,
			wantErr: []string{"no PostgreSQL 14 server programs found (looked in $LIFEBOAT_PG_BIN ", "own/bin (PostgreSQL 15.7), ",
				"lib/14/bin (no postgres), pg_config ", "lib/15/bin (PostgreSQL 15.6)): install postgresql-14, or set $LIFEBOAT_PG_BIN"},
		},
		{
			name: "nothing at all", setup: func(m *fakeMachine) {}, major: 0, notFound: true,
			wantErr: []string{"no PostgreSQL server programs found", "install postgresql,"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMachine(t)
			tc.setup(m)
			bin, err := m.finder().find(context.Background(), tc.major)
			if tc.want != "" {
				if err != nil {
					t.Fatalf("find(%d): %v", tc.major, err)
				}
				if want := filepath.Join(m.root, tc.want); bin.Dir != want {
					t.Fatalf("find(%d) = %s, want %s", tc.major, bin.Dir, want)
				}
				if tc.major != 0 && bin.Major != tc.major || bin.Version == "" {
					t.Fatalf("find(%d) = %+v", tc.major, bin)
				}
				return
			}
			if err == nil {
				t.Fatalf("find(%d) = %+v, want an error", tc.major, bin)
			}
			if errors.Is(err, ErrNotFound) != tc.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tc.notFound, tc.notFound)
			}
			msg := err.Error()
			for _, w := range tc.wantErr {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if strings.Count(msg, "lib/15/bin") > 1 || strings.Contains(msg, "\n") {
				t.Errorf("error %q names a directory twice or spans lines", msg)
			}
		})
	}
}

func TestFindClient(t *testing.T) {
	for _, tc := range []struct {
		name        string
		installed   []string // versions in the Debian layout
		onPath      string   // version of the one on PATH, if any
		want, least int
		got         string // version picked, "" for an error
		wantErr     []string
	}{
		{name: "same major", installed: []string{"14.1", "15.6", "16.2"}, want: 15, least: 15, got: "15.6"},
		{name: "same major on PATH", onPath: "15.9", installed: []string{"16.2"}, want: 15, least: 15, got: "15.9"},
		{name: "the oldest newer one", installed: []string{"14.1", "17.0", "16.2"}, want: 15, least: 15, got: "16.2"},
		{name: "a dump newer than the server", installed: []string{"15.6", "16.2"}, want: 15, least: 16, got: "16.2"},
		{name: "an older one when nothing newer", installed: []string{"13.1", "14.1"}, want: 15, least: 0, got: "14.1"},
		{
			name: "too old", installed: []string{"14.1", "15.6"}, want: 16, least: 16,
			wantErr: []string{"no pg_dump of PostgreSQL 16 or newer found (have ", "14/bin/pg_dump (14.1)", "install postgresql-client-16"},
		},
		{
			name: "none", want: 15, least: 15,
			wantErr: []string{"pg_dump not found (looked in ", "lib/15/bin", "apt-get install postgresql-client-15"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newFakeMachine(t)
			for _, v := range tc.installed {
				major, _, _ := strings.Cut(v, ".")
				m.install("lib/"+major+"/bin", v, "pg_dump")
			}
			if tc.onPath != "" {
				m.path["pg_dump"] = filepath.Join(m.install("path", tc.onPath, "pg_dump"), "pg_dump")
			}
			p, err := m.finder().findClient(context.Background(), "pg_dump", tc.want, tc.least)
			if tc.got != "" {
				if err != nil || p.Version != tc.got || filepath.Base(p.Path) != "pg_dump" {
					t.Fatalf("findClient(%d, %d) = %+v, %v; want version %s", tc.want, tc.least, p, err, tc.got)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNotFound) {
				t.Fatalf("findClient(%d, %d) = %+v, %v; want ErrNotFound", tc.want, tc.least, p, err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestProgramVersion(t *testing.T) {
	m := newFakeMachine(t)
	dir := m.install("bin", "15.13 (Debian 15.13-1.pgdg120+1)", "postgres")
	p, err := programVersion(context.Background(), filepath.Join(dir, "postgres"))
	if err != nil || p.Major != 15 || p.Version != "15.13" {
		t.Fatalf("programVersion = %+v, %v", p, err)
	}
	m.install("dev", "17devel", "postgres")
	if p, err := programVersion(context.Background(), filepath.Join(m.root, "dev", "postgres")); err != nil || p.Major != 17 || p.Version != "17" {
		t.Fatalf("programVersion of a development build = %+v, %v", p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other"), []byte("#!/bin/sh\necho something else\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := programVersion(context.Background(), filepath.Join(dir, "other")); err == nil || !strings.Contains(err.Error(), "unexpected output") {
		t.Fatalf("programVersion of a stranger: %v", err)
	}
}
