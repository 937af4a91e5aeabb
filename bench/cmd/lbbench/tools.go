package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	toolPgBackRest = "pgbackrest"
	toolLifeboat   = "lifeboat"
	stanza         = "bench" // pgBackRest stanza and Lifeboat asset name
)

// toolSpec is everything the phase runner needs to drive one backup tool: the
// commands for each step and the paths that make up its repository. Both tools
// are plain data so the phase runner treats them identically.
type toolSpec struct {
	name      string
	bin       string
	repoDir   string   // bytes written by a backup are measured here
	wipe      []string // removed before the phase so it starts from nothing
	mkdirs    []string // created (owned by the bench user) after wiping
	version   []string // arguments that print the tool's version
	init      []string // creates the empty repository (unmeasured)
	full      []string
	incr      []string
	restore   func(dir string) []string
	push      []string // archive_command words; the segment path is appended
	restoreTo string   // directory the measured restore writes into
}

func (h *harness) pgbackrestSpec() toolSpec {
	root := h.cfg.root
	conf := filepath.Join(root, "pgbackrest.conf")
	base := []string{"--config=" + conf, "--stanza=" + stanza}
	with := func(args ...string) []string { return append(append([]string{}, base...), args...) }
	repo := filepath.Join(root, "pgbr-repo")
	state := []string{filepath.Join(root, "pgbr-log"), filepath.Join(root, "pgbr-lock"), filepath.Join(root, "pgbr-spool")}
	return toolSpec{
		name:    toolPgBackRest,
		bin:     h.cfg.pgbackrest,
		repoDir: repo,
		wipe:    append([]string{repo}, state...),
		mkdirs:  append([]string{repo}, state...),
		version: []string{"version"},
		init:    with("stanza-create"),
		full:    with("backup", "--type=full"),
		incr:    with("backup", "--type=incr"),
		restore: func(dir string) []string {
			return with("restore", "--pg1-path="+dir, "--type=immediate")
		},
		push:      append([]string{h.cfg.pgbackrest}, with("archive-push")...),
		restoreTo: filepath.Join(root, "restore-pgbackrest"),
	}
}

// pgbackrestConfig renders pgbackrest.conf. Log, lock and spool paths live in
// the bench root so pgBackRest needs nothing from /var/log or /tmp.
func (h *harness) pgbackrestConfig() string {
	root := h.cfg.root
	return fmt.Sprintf(`# written by lbbench; every run overwrites it
[global]
repo1-path=%s
repo1-retention-full=99
compress-type=zst
compress-level=3
process-max=%d
start-fast=y
archive-async=n
log-level-console=warn
log-level-file=info
log-path=%s
lock-path=%s
spool-path=%s

[%s]
pg1-path=%s
pg1-socket-path=%s
pg1-port=%d
pg1-user=postgres
`, filepath.Join(root, "pgbr-repo"), h.cfg.processMax,
		filepath.Join(root, "pgbr-log"), filepath.Join(root, "pgbr-lock"), filepath.Join(root, "pgbr-spool"),
		stanza, h.cl.dataDir, h.cl.sockDir, h.cl.port)
}

func (h *harness) lifeboatSpec() toolSpec {
	root := h.cfg.root
	policy := filepath.Join(root, "lifeboat.yaml")
	bin := filepath.Join(root, "bin", "lifeboat")
	with := func(args ...string) []string { return append([]string{"-c", policy}, args...) }
	repo := filepath.Join(root, "lb-repo")
	home := filepath.Join(root, "home") // any cache Lifeboat keeps under $HOME starts cold too
	return toolSpec{
		name:    toolLifeboat,
		bin:     bin,
		repoDir: repo,
		wipe:    []string{repo, filepath.Join(root, "lb.key"), home},
		mkdirs:  []string{home},
		version: []string{"version"},
		init:    with("repo", "init"),
		full:    with("backup", stanza, "--full"),
		incr:    with("backup", stanza),
		restore: func(dir string) []string {
			return with("restore", stanza, "--to", dir)
		},
		push:      append([]string{bin}, with("wal-push", stanza)...),
		restoreTo: filepath.Join(root, "restore-lifeboat"),
	}
}

// lifeboatPolicy renders the policy file of the CLI contract.
func (h *harness) lifeboatPolicy() string {
	root := h.cfg.root
	return fmt.Sprintf(`# written by lbbench; every run overwrites it
repositories:
  - name: primary
    url: file://%s
    key_file: %s
assets:
  - name: %s
    kind: postgres
    pgdata: %s
    dsn: "host=%s port=%d user=postgres dbname=postgres"
    repositories: [primary]
`, filepath.Join(root, "lb-repo"), filepath.Join(root, "lb.key"), stanza, h.cl.dataDir, h.cl.sockDir, h.cl.port)
}

// walPushWrapper renders the archive_command script that times each push.
// PostgreSQL runs archive_command through /bin/sh with PGDATA as the working
// directory; the script passes %p through unchanged and appends
// "start_ns end_ns exit_code file" to logPath. The file name of the
// pgBackRest wrapper contains "pgbackrest", which pgBackRest's own check of
// archive_command looks for.
func walPushWrapper(push []string, logPath string) string {
	quoted := make([]string, len(push))
	for i, w := range push {
		quoted[i] = shellQuote(w)
	}
	return fmt.Sprintf(`#!/bin/sh
# written by lbbench: times one archive_command invocation.
# $1 is %%p (segment path relative to PGDATA), $2 is %%f (file name).
start=$(date +%%s%%N)
%s "$1"
rc=$?
end=$(date +%%s%%N)
echo "$start $end $rc $2" >> %s
exit $rc
`, strings.Join(quoted, " "), shellQuote(logPath))
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '-' || r == '_' || r == '.' || r == '=' || r == ':' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeToolFiles writes the per-tool configuration and wrapper script and
// returns the archive_command that runs the wrapper.
func (h *harness) writeToolFiles(t toolSpec) (archiveCommand string, err error) {
	root := h.cfg.root
	files := map[string]string{}
	switch t.name {
	case toolPgBackRest:
		files[filepath.Join(root, "pgbackrest.conf")] = h.pgbackrestConfig()
	case toolLifeboat:
		files[filepath.Join(root, "lifeboat.yaml")] = h.lifeboatPolicy()
	}
	for path, content := range files {
		if err := h.writeOwned(path, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	script := h.wrapperPath(t.name)
	if err := h.writeOwned(script, []byte(walPushWrapper(t.push, h.pushLogPath(t.name))), 0o755); err != nil {
		return "", err
	}
	return shellQuote(script) + " %p %f", nil
}

func (h *harness) wrapperPath(tool string) string {
	return filepath.Join(h.cfg.root, "walpush-"+tool+".sh")
}

func (h *harness) pushLogPath(tool string) string {
	return filepath.Join(h.cfg.root, "logs", "walpush-"+tool+".log")
}

// toolVersion asks the tool for its version; a tool that cannot say is
// reported as such rather than failing the run.
func (h *harness) toolVersion(ctx context.Context, t toolSpec) string {
	if _, err := os.Stat(t.bin); err != nil {
		return "unavailable: " + err.Error()
	}
	res, err := h.r.run(ctx, cmdSpec{path: t.bin, args: t.version, timeout: time.Minute})
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return lastLine(res.Stdout + res.Stderr)
}

// stepLabel names a step's log file.
func stepLabel(run int, tool, step string) string {
	return "run" + strconv.Itoa(run) + "-" + tool + "-" + step
}
