package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
)

// doctor runs lifeboat doctor --json and returns its exit code and the
// probes by name (and asset or repository).
func (e *env) doctor(args ...string) (int, map[string]asset.Probe) {
	e.t.Helper()
	r := e.run(append([]string{"doctor", "--json", "--wait", "30s"}, args...)...)
	var ps []asset.Probe
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		e.t.Fatalf("doctor --json: exit %d, %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	byName := map[string]asset.Probe{}
	for _, p := range ps {
		key := p.Name
		if p.Repository != "" {
			key += "@" + p.Repository
		}
		byName[key] = p
	}
	return r.code, byName
}

// wantProbe fails t unless the probe is there with the status and a
// message holding want.
func wantProbe(t *testing.T, ps map[string]asset.Probe, name, status, want string) {
	t.Helper()
	p, ok := ps[name]
	if !ok || p.Status != status || !strings.Contains(p.Message, want) {
		t.Fatalf("probe %s: got %+v (found %v), want %s with %q; all: %+v", name, p, ok, status, want, ps)
	}
}

// TestDoctorHealthy: on a working set-up every probe passes, the WAL
// round trip included, and the text output has one line a probe.
func TestDoctorHealthy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	code, ps := e.doctor()
	if code != 0 {
		t.Fatalf("doctor exit %d: %+v", code, ps)
	}
	for _, name := range []string{"policy", "key_file", "state_dir", "repository@primary", "server", "archiving", "pgdata", "clock", "pg_wal_space", "archive_user", "wal_round_trip@primary"} {
		p, ok := ps[name]
		if !ok {
			t.Fatalf("no %s probe: %+v", name, ps)
		}
		// Free space depends on the machine: a warning there is the
		// probe doing its job, not a broken set-up.
		if p.Status != asset.ProbeOK && !(name == "pg_wal_space" && p.Status == asset.ProbeWarn) {
			t.Errorf("probe %s: %+v", name, p)
		}
	}
	wantProbe(t, ps, "wal_round_trip@primary", asset.ProbeOK, "fetched back")
	// check runs the read-only probes too.
	if out := e.run("check").stdout; !regexp.MustCompile(`(?m)^db +setup +ok +pgdata, clock, pg_wal_space, archive_user fine`).MatchString(out) {
		t.Errorf("check has no passing setup line:\n%s", out)
	}
	// One line a probe: the two archive_user probes (policy, key) are
	// one entry of ps.
	out := e.mustRun("doctor", "db")
	if n := strings.Count(out, "\n"); n != len(ps)+1 || strings.Count(out, "archive_user") != 2 {
		t.Fatalf("%d lines for %d probes:\n%s", n, len(ps)+1, out)
	}
}

// TestDoctorArchiving: archive settings that send WAL nowhere, or to
// another asset, fail the archiving probe and skip the round trip; check
// fails wal_lag for them instead of judging a lag.
func TestDoctorArchiving(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	setArchive := func(cmd string) {
		t.Helper()
		e.sql(fmt.Sprintf("alter system set archive_command = '%s'", strings.ReplaceAll(cmd, "'", "''")))
		e.sql("select pg_reload_conf()")
		if !eventually(10*time.Second, func() bool { return e.sql("show archive_command") == cmd }) {
			t.Fatalf("archive_command not reloaded")
		}
	}
	fix := fmt.Sprintf("%s -c %s wal-push db %%p", e.bin, e.policy)
	for _, c := range []struct{ command, want string }{
		{"", "archive_command is empty"},
		{fmt.Sprintf("%s -c %s wal-push other %%p", e.bin, e.policy), `archives into asset "other", not db`},
	} {
		setArchive(c.command)
		start := time.Now()
		code, ps := e.doctor()
		if code != 1 {
			t.Fatalf("%q: doctor exit %d, want 1", c.command, code)
		}
		if took := time.Since(start); took > 10*time.Second {
			t.Errorf("%q: doctor took %s: the round trip should be skipped", c.command, took)
		}
		wantProbe(t, ps, "archiving", asset.ProbeFail, c.want)
		if !strings.Contains(ps["archiving"].Fix, fix) {
			t.Errorf("archiving fix %q does not name %q", ps["archiving"].Fix, fix)
		}
		wantProbe(t, ps, "wal_round_trip", asset.ProbeFail, "skipped")
		r := e.run("check")
		if r.code != 1 || !regexp.MustCompile(`(?m)^db +wal_lag +FAIL +archiving is failing: .*`+regexp.QuoteMeta(c.want)).MatchString(r.stdout) {
			t.Fatalf("%q: check exit %d, want a failing wal_lag with %q:\n%s", c.command, r.code, c.want, r.stdout)
		}
	}
}

// TestDoctorFilesAndRepository: a policy others can read warns; a
// state_dir or a repository this user cannot write, and a repository
// that is not there, fail their own probe.
func TestDoctorFilesAndRepository(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Fatal("running as root: permissions cannot be tested (pgtest should have dropped to its user)")
	}
	e := newEnv(t, false)

	if err := os.Chmod(e.policy, 0o644); err != nil {
		t.Fatal(err)
	}
	code, ps := e.doctor()
	wantProbe(t, ps, "policy", asset.ProbeWarn, "mode 0644")
	if code != 0 {
		t.Fatalf("a warning alone: doctor exit %d, want 0: %+v", code, ps)
	}
	if err := os.Chmod(e.policy, 0o600); err != nil {
		t.Fatal(err)
	}

	state := filepath.Join(e.dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o500); err != nil {
		t.Fatal(err)
	}
	code, ps = e.doctor()
	wantProbe(t, ps, "state_dir", asset.ProbeFail, "not writable")
	if code != 1 {
		t.Fatalf("state_dir not writable: doctor exit %d, want 1", code)
	}
	if err := os.Chmod(state, 0o700); err != nil {
		t.Fatal(err)
	}

	// pgdata that is not the server's: doctor and check say so. (The
	// directory looks like one, so only this probe fails.)
	good, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	fake := filepath.Join(e.dir, "not-pgdata")
	if err := os.MkdirAll(filepath.Join(fake, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.policy, []byte(strings.Replace(string(good), "pgdata: "+e.pg.DataDir, "pgdata: "+fake, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, ps = e.doctor()
	check := e.run("check")
	if err := os.WriteFile(e.policy, good, 0o600); err != nil {
		t.Fatal(err)
	}
	wantProbe(t, ps, "pgdata", asset.ProbeFail, "is not the server's data_directory "+e.pg.DataDir)
	if code != 1 {
		t.Fatalf("wrong pgdata: doctor exit %d, want 1", code)
	}
	if check.code != 1 || !regexp.MustCompile(`(?m)^db +setup +FAIL +pgdata: pgdata `+regexp.QuoteMeta(fake)+` is not the server's data_directory`).MatchString(check.stdout) {
		t.Fatalf("wrong pgdata: check exit %d, want a failing setup line:\n%s", check.code, check.stdout)
	}

	// A read-only repository opens but takes no lock.
	var dirs []string
	if err := filepath.WalkDir(e.repo, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	chmodAll := func(mode os.FileMode) {
		t.Helper()
		for _, d := range dirs {
			if err := os.Chmod(d, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	chmodAll(0o500)
	code, ps = e.doctor()
	chmodAll(0o700)
	wantProbe(t, ps, "repository@primary", asset.ProbeFail, "writing a lock failed")
	if code != 1 || strings.Contains(ps["repository@primary"].Message, "another backup") {
		t.Fatalf("read-only repository: doctor exit %d, %+v", code, ps["repository@primary"])
	}

	// A repository that is not there: the policy doctor reads points
	// elsewhere (the server's archive_command keeps its own).
	other := *e
	other.policy = filepath.Join(e.dir, "elsewhere.yaml")
	other.repoURL = "file://" + filepath.Join(e.dir, "no-such-repo")
	other.writePolicy(filepath.Join(e.dir, "repo.key"))
	code, ps = other.doctor()
	wantProbe(t, ps, "repository@primary", asset.ProbeFail, "cannot open")
	if code != 1 {
		t.Fatalf("missing repository: doctor exit %d, want 1", code)
	}
}

// TestDoctorCopy: a copy repository is probed like the primary, and the
// round trip waits for its segment there too (wal-push queues it and a
// background lifeboat copy --queued sends it).
func TestDoctorCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	text, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	withCopy := strings.Replace(string(text), "tiers:", fmt.Sprintf("  - name: dr\n    url: file://%s\n    key_file: %s\ntiers:",
		filepath.Join(e.dir, "dr"), filepath.Join(e.dir, "dr.key")), 1)
	withCopy = strings.Replace(withCopy, "repositories: [primary]", "repositories: [primary, dr]", 1)
	if err := os.WriteFile(e.policy, []byte(withCopy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.mustRun("repo", "init", "dr")
	// A copy that holds nothing of the asset yet is a warning at once:
	// the queue sends it nothing before a backup or lifeboat copy has.
	start := time.Now()
	code, ps := e.doctor()
	wantProbe(t, ps, "wal_round_trip@dr", asset.ProbeWarn, "is not in copy dr")
	if code != 0 || time.Since(start) > 20*time.Second {
		t.Fatalf("empty copy: doctor exit %d after %s, want 0 without waiting out --wait", code, time.Since(start))
	}
	e.mustRun("backup", "db")
	code, ps = e.doctor()
	if code != 0 {
		t.Fatalf("doctor exit %d: %+v", code, ps)
	}
	wantProbe(t, ps, "repository@dr", asset.ProbeOK, "writable")
	wantProbe(t, ps, "wal_round_trip@primary", asset.ProbeOK, "fetched back")
	wantProbe(t, ps, "wal_round_trip@dr", asset.ProbeOK, "reached copy dr and was fetched back")
}
