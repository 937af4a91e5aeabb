package pgtest

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRewriteArgs(t *testing.T) {
	const cwd, scratch = "/src/pkg", "/shared/out"
	tests := []struct {
		name      string
		args      []string
		wantArgs  []string
		redirects []redirect
	}{
		{
			name:     "no path flags",
			args:     []string{"-test.v=true", "-test.run", "TestX", "-test.timeout=10m0s"},
			wantArgs: []string{"-test.v=true", "-test.run", "TestX", "-test.timeout=10m0s"},
		},
		{
			name:      "cmd/go test log",
			args:      []string{"-test.testlogfile=/tmp/go-build1/b001/testlog.txt", "-test.paniconexit0"},
			wantArgs:  []string{"-test.testlogfile=/shared/out/0-testlogfile-testlog.txt", "-test.paniconexit0"},
			redirects: []redirect{{orig: "/tmp/go-build1/b001/testlog.txt", child: "/shared/out/0-testlogfile-testlog.txt"}},
		},
		{
			name:     "separate value, double dash, relative profile under outputdir",
			args:     []string{"--test.cpuprofile", "cpu.out", "-test.outputdir=/work/x"},
			wantArgs: []string{"--test.cpuprofile", "/shared/out/0-cpuprofile-cpu.out", "-test.outputdir=/shared/out/1-outputdir-x"},
			redirects: []redirect{
				{orig: "/work/x/cpu.out", child: "/shared/out/0-cpuprofile-cpu.out"},
				{orig: "/work/x", child: "/shared/out/1-outputdir-x", dir: true},
			},
		},
		{
			name:      "relative test log resolves against cwd",
			args:      []string{"-test.testlogfile=log.txt", "-test.outputdir=/o"},
			wantArgs:  []string{"-test.testlogfile=/shared/out/0-testlogfile-log.txt", "-test.outputdir=/shared/out/1-outputdir-o"},
			redirects: []redirect{{orig: "/src/pkg/log.txt", child: "/shared/out/0-testlogfile-log.txt"}, {orig: "/o", child: "/shared/out/1-outputdir-o", dir: true}},
		},
		{
			name:      "coverage dir",
			args:      []string{"-test.gocoverdir=/tmp/go-build1/b001/gocoverdir"},
			wantArgs:  []string{"-test.gocoverdir=/shared/out/0-gocoverdir-gocoverdir"},
			redirects: []redirect{{orig: "/tmp/go-build1/b001/gocoverdir", child: "/shared/out/0-gocoverdir-gocoverdir", dir: true}},
		},
		{
			name:     "empty value and arguments after --",
			args:     []string{"-test.coverprofile=", "--", "-test.trace=/x"},
			wantArgs: []string{"-test.coverprofile=", "--", "-test.trace=/x"},
		},
		{
			name:     "dangling flag",
			args:     []string{"-test.trace"},
			wantArgs: []string{"-test.trace"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotArgs, gotRedirects := rewriteArgs(tc.args, cwd, scratch)
			if !reflect.DeepEqual(gotArgs, tc.wantArgs) {
				t.Errorf("args = %q, want %q", gotArgs, tc.wantArgs)
			}
			if !reflect.DeepEqual(gotRedirects, tc.redirects) {
				t.Errorf("redirects = %+v, want %+v", gotRedirects, tc.redirects)
			}
		})
	}
}

func TestIsFuzzing(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-test.v=true"}, false},
		{[]string{"-test.fuzz=FuzzX"}, true},
		{[]string{"-test.fuzz", "FuzzX"}, true},
		{[]string{"-test.fuzz="}, false},
		{[]string{"-test.fuzzworker"}, true},
		{[]string{"-test.fuzzcachedir=/c", "-test.run=X"}, false},
		{[]string{"--", "-test.fuzz=FuzzX"}, false},
	} {
		if got := isFuzzing(tc.args); got != tc.want {
			t.Errorf("isFuzzing(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

func TestConfQuoting(t *testing.T) {
	for _, tc := range []struct{ in, raw, file string }{
		{"on", "on", "'on'"},
		{"", "", "''"},
		{"'replica'", "replica", "'replica'"},
		{`cp %p /a\b/%f`, `cp %p /a\b/%f`, `'cp %p /a\\b/%f'`},
		{`it's`, `it's`, `'it''s'`},
		{`'it''s \\ x'`, `it's \ x`, `'it''s \\ x'`},
	} {
		raw := rawConfValue(tc.in)
		if raw != tc.raw {
			t.Errorf("rawConfValue(%q) = %q, want %q", tc.in, raw, tc.raw)
		}
		if got := quoteConf(raw); got != tc.file {
			t.Errorf("quoteConf(%q) = %q, want %q", raw, got, tc.file)
		}
	}
}

func FuzzRewriteArgs(f *testing.F) {
	f.Add("-test.testlogfile=/a/b\x00-test.v=true")
	f.Add("-test.cpuprofile\x00c.out\x00-test.outputdir\x00out")
	f.Add("--\x00-test.trace=/x")
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		const scratch = "/shared/out"
		got, redirects := rewriteArgs(args, "/cwd", scratch)
		if len(got) != len(args) {
			t.Fatalf("rewriteArgs changed the argument count: %q -> %q", args, got)
		}
		changed := 0
		for i := range args {
			if got[i] != args[i] {
				changed++
			}
		}
		if changed > len(redirects) {
			t.Fatalf("%d arguments changed for %d redirects", changed, len(redirects))
		}
		for _, r := range redirects {
			if filepath.Dir(r.child) != scratch || !filepath.IsAbs(r.orig) {
				t.Fatalf("bad redirect %+v", r)
			}
		}
	})
}

func FuzzConfQuoting(f *testing.F) {
	f.Add(`cp %p '/x y'\z`)
	f.Add(`'`)
	f.Fuzz(func(t *testing.T, s string) {
		if got := rawConfValue(quoteConf(s)); got != s {
			t.Fatalf("rawConfValue(quoteConf(%q)) = %q", s, got)
		}
	})
}
