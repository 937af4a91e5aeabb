package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
)

func TestUnknownCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	e := newFilesEnv(t, []string{t.TempDir()}, nil)
	r := e.run("resore", "app-config")
	if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, `lifeboat: unknown command "resore" (did you mean `) ||
		!strings.Contains(r.stderr, "restore") || !strings.Contains(r.stderr, "lifeboat --help") {
		t.Fatalf("unknown command: exit %d: %q", r.code, r.stderr)
	}
	if r := e.run(); r.code != 0 || !strings.Contains(r.stdout, "Available Commands") {
		t.Fatalf("no command: exit %d: %s", r.code, r.stderr)
	}
}

func TestShellCompletesNamesFromThePolicy(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o600, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.mustRun("backup", "app-config")
	id := e.mustRun("snapshots", "app-config", "--json")
	id = id[strings.Index(id, `"id": "`)+7:][:8]
	complete := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(e.bin, append([]string{"-c", e.policy, "__complete"}, args...)...).Output()
		if err != nil {
			t.Fatalf("complete %v: %v", args, err)
		}
		return string(out)
	}
	if out := complete("backup", ""); !strings.Contains(out, "app-config\n") {
		t.Errorf("asset names:\n%s", out)
	}
	if out := complete("restore", "app-config", "--repository", ""); !strings.Contains(out, "primary\n") {
		t.Errorf("repository names:\n%s", out)
	}
	if out := complete("pin", ""); !strings.Contains(out, id+"\tapp-config ") {
		t.Errorf("snapshot ids (want %s):\n%s", id, out)
	}
	if out := complete("backup", "app-config", ""); strings.Contains(out, "app-config") {
		t.Errorf("a second asset offered to backup:\n%s", out)
	}
}

func TestProgressShowsRateAndTimeLeft(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pr      asset.Progress
		elapsed time.Duration
		want    string
	}{
		{asset.Progress{Done: 100 << 20, Total: 300 << 20}, 10 * time.Second, ", 10.0 MiB/s, about 20s left"},
		{asset.Progress{Done: 100 << 20}, 10 * time.Second, ", 10.0 MiB/s"},
		{asset.Progress{Done: 100 << 20, Total: 300 << 20}, 100 * time.Millisecond, ""},
		{asset.Progress{Total: 300 << 20}, 10 * time.Second, ""},
	} {
		if got := rateAndETA(c.pr, c.elapsed); got != c.want {
			t.Errorf("rateAndETA(%+v, %s) = %q, want %q", c.pr, c.elapsed, got, c.want)
		}
	}
}

// TestPolicyErrorsOnePerLine: every problem of a policy is reported in one
// run, each on its own line naming file and line.
func TestPolicyErrorsOnePerLine(t *testing.T) {
	t.Parallel()
	e := newFilesEnv(t, []string{t.TempDir()}, nil)
	bad := strings.Join([]string{
		"repositories:",
		"  - name: primary",
		"    url: file:///tmp/nowhere",
		"    key_file: /tmp/nowhere.key",
		"assets:",
		"  - name: db",
		"    kind: postgres",
		"    pgdata: relative",
		"    repositories: [primary]",
		"",
	}, "\n")
	if err := os.WriteFile(e.policy, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("status")
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 2 || len(lines) != 2 {
		t.Fatalf("exit %d, want 2 and two lines:\n%s", r.code, r.stderr)
	}
	for i, want := range []string{":6: assets[0].dsn: dsn is required", `:8: assets[0].pgdata: pgdata "relative" must be an absolute path`} {
		if !strings.HasPrefix(lines[i], "lifeboat: "+e.policy) || !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %q, want %q", i+1, lines[i], want)
		}
	}
}

func TestVerifyJSONForOneRepository(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), "a", 0o600, time.Now())
	e := newFilesEnv(t, []string{src}, nil)
	e.mustRun("backup", "app-config")
	var got []verifyJSON
	if err := json.Unmarshal([]byte(e.mustRun("verify", "--json", "--repository", "primary")), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Repository != "primary" || got[0].Snapshots != 1 || len(got[0].Problems) != 0 {
		t.Fatalf("verify --json: %+v", got)
	}
	if r := e.run("verify", "--repository", "nope"); r.code != 2 || !strings.Contains(r.stderr, "nope") {
		t.Fatalf("verify of an unknown repository: exit %d: %s", r.code, r.stderr)
	}
}
