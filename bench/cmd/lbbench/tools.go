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
	repoDir   string   // bytes written by a backup are measured here (-storage fs)
	bucket    string   // the repository's bucket, emptied before the phase (-storage s3)
	env       []string // added to the tool's environment, the archive_command's and the restored cluster's
	wipe      []string // removed before the phase so it starts from nothing
	mkdirs    []string // created (owned by the bench user) after wiping
	version   []string // arguments that print the tool's version
	init      []string // creates the empty repository (unmeasured)
	full      []string
	incr      []string
	restore   func(dir string) []string
	push      []string // archive_command words; the segment path is appended
	restoreTo string   // directory the measured restore writes into
	// copyBucket is the copy repository's bucket, emptied before the phase
	// (Lifeboat with -copy -storage s3).
	copyBucket string
	// copyStatus prints the copy's lag as JSON (Lifeboat with -copy); the
	// workload samples it.
	copyStatus []string
}

func (h *harness) pgbackrestSpec() toolSpec {
	root := h.cfg.root
	conf := filepath.Join(root, "pgbackrest.conf")
	base := []string{"--config=" + conf, "--stanza=" + stanza}
	with := func(args ...string) []string { return append(append([]string{}, base...), args...) }
	state := []string{filepath.Join(root, "pgbr-log"), filepath.Join(root, "pgbr-lock"), filepath.Join(root, "pgbr-spool")}
	// With S3 the repository is the bucket (the CA file is in the
	// configuration); locally it is a directory wiped and created like the state.
	var repoDir, bucket string
	dirs := state
	if h.minio != nil {
		bucket = bucketFor(toolPgBackRest)
	} else {
		repoDir = filepath.Join(root, "pgbr-repo")
		dirs = append([]string{repoDir}, state...)
	}
	return toolSpec{
		name:    toolPgBackRest,
		bin:     h.cfg.pgbackrest,
		repoDir: repoDir,
		bucket:  bucket,
		wipe:    dirs,
		mkdirs:  dirs,
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
// the bench root so pgBackRest needs nothing from /var/log or /tmp. Compression
// and process-max are the same for both storage kinds.
func (h *harness) pgbackrestConfig() string {
	root := h.cfg.root
	repo := "repo1-path=" + filepath.Join(root, "pgbr-repo") + "\n"
	if m := h.minio; m != nil {
		// pgBackRest's S3 client speaks HTTPS only; it trusts MinIO's
		// certificate through the bench CA, verification stays on.
		repo = fmt.Sprintf(`repo1-type=s3
repo1-path=%s
repo1-s3-bucket=%s
repo1-s3-endpoint=127.0.0.1
repo1-storage-port=%d
repo1-s3-uri-style=path
repo1-s3-region=%s
repo1-s3-key=%s
repo1-s3-key-secret=%s
repo1-storage-ca-file=%s
`, pgbackrestRepoPath, bucketFor(toolPgBackRest), m.Port, minioRegion, m.AccessKey, m.SecretKey, m.CAFile)
	}
	return fmt.Sprintf(`# written by lbbench; every run overwrites it
[global]
%srepo1-retention-full=99
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
`, repo, h.cfg.processMax,
		filepath.Join(root, "pgbr-log"), filepath.Join(root, "pgbr-lock"), filepath.Join(root, "pgbr-spool"),
		stanza, h.cl.DataDir, h.cl.SocketDir, h.cl.Port)
}

func (h *harness) lifeboatSpec() toolSpec {
	root := h.cfg.root
	policy := filepath.Join(root, "lifeboat.yaml")
	bin := filepath.Join(root, "bin", "lifeboat")
	with := func(args ...string) []string { return append([]string{"-c", policy}, args...) }
	home := filepath.Join(root, "home") // any cache Lifeboat keeps under $HOME starts cold too
	wipe := []string{filepath.Join(root, "lb.key"), home}
	mkdirs := []string{home}
	var repoDir, bucket, copyBucket string
	var env, noCopy, copyStatus []string
	if h.minio != nil {
		bucket = bucketFor(toolLifeboat)
		// Go reads the trusted roots from SSL_CERT_FILE on Linux. The
		// archive_command and the restored cluster's restore_command get it
		// too: they run with the server's environment, not the harness's.
		env = []string{"SSL_CERT_FILE=" + h.minio.CAFile}
	} else {
		repoDir = filepath.Join(root, "lb-repo")
		wipe = append([]string{repoDir}, wipe...)
	}
	if h.cfg.copy || h.cfg.drill.enabled {
		// The host state (the copy's WAL queue, the catalog that records
		// drills) starts from nothing like the primary; the state directory
		// must exist and belong to the bench user, who runs archive_command.
		state := h.lifeboatStateDir()
		wipe = append(wipe, state)
		mkdirs = append(mkdirs, state)
	}
	if h.cfg.copy {
		// The copy's key starts from nothing like the primary's.
		wipe = append(wipe, filepath.Join(root, "lb-copy.key"))
		if h.minio != nil {
			copyBucket = lifeboatCopyBucket
		} else {
			wipe = append(wipe, filepath.Join(root, "lb-copy"))
		}
		// The backups leave the copy alone so their wall time compares with
		// pgBackRest's, which writes one repository; WAL still reaches the
		// copy through wal-push's queue, which is what is measured.
		noCopy = []string{"--no-copy"}
		copyStatus = with("status", stanza, "--json")
	}
	return toolSpec{
		name:    toolLifeboat,
		bin:     bin,
		repoDir: repoDir,
		bucket:  bucket,
		env:     env,
		wipe:    wipe,
		mkdirs:  mkdirs,
		version: []string{"version"},
		init:    with("repo", "init"),
		full:    append(with("backup", stanza, "--full"), noCopy...),
		incr:    append(with("backup", stanza), noCopy...),
		restore: func(dir string) []string {
			return with("restore", stanza, "--to", dir)
		},
		push:       append([]string{bin}, with("wal-push", stanza)...),
		restoreTo:  filepath.Join(root, "restore-lifeboat"),
		copyBucket: copyBucket,
		copyStatus: copyStatus,
	}
}

// lifeboatCopyRepo names the copy repository of the -copy policy.
const lifeboatCopyRepo = "dr"

// lifeboatStateDir is the policy's state_dir with -copy or -drill: the
// copy queue and the catalog live in the bench root, not in
// /var/lib/lifeboat.
func (h *harness) lifeboatStateDir() string { return filepath.Join(h.cfg.root, "lb-state") }

// lifeboatPolicy renders the policy file of the CLI contract. With -copy the
// asset also lists a copy repository with its own key, in a second directory
// or (with -storage s3) a second bucket on the same MinIO. With -drill the
// asset gets a tier and a drill section (see drill.go).
func (h *harness) lifeboatPolicy() string {
	root := h.cfg.root
	location := func(dir, bucket string) string {
		if m := h.minio; m != nil {
			return fmt.Sprintf("url: %q\n    access_key: %q\n    secret_key: %q", m.lifeboatURL(bucket), m.AccessKey, m.SecretKey)
		}
		return "url: file://" + filepath.Join(root, dir)
	}
	var head, copyRepo, assetTail string
	repos := "[primary]"
	if h.cfg.copy || h.cfg.drill.enabled {
		head = "state_dir: " + h.lifeboatStateDir() + "\n"
	}
	if h.cfg.drill.enabled {
		// The drill holds its measurements to this tier (RPO 60 s is the
		// issue's target) and runs the policy example's validation query,
		// so a bench drill does what an operator's drill does.
		head += fmt.Sprintf("tiers:\n  %s:\n    rpo: %s\n    rto: %s\n", drillTier, drillTierRPO, drillTierRTO)
		assetTail = fmt.Sprintf(`    tier: %s
    drill:
      point: random
      checks:
        - name: %s
          sql: %q
`, drillTier, drillCheckName, drillCheckSQL)
	}
	if h.cfg.copy {
		copyRepo = fmt.Sprintf("  - name: %s\n    %s\n    key_file: %s\n",
			lifeboatCopyRepo, location("lb-copy", lifeboatCopyBucket), filepath.Join(root, "lb-copy.key"))
		repos = "[primary, " + lifeboatCopyRepo + "]"
	}
	return fmt.Sprintf(`# written by lbbench; every run overwrites it
%srepositories:
  - name: primary
    %s
    key_file: %s
%sassets:
  - name: %s
    kind: postgres
    pgdata: %s
    dsn: "host=%s port=%d user=postgres dbname=postgres"
    repositories: %s
%s`, head, location("lb-repo", bucketFor(toolLifeboat)), filepath.Join(root, "lb.key"), copyRepo,
		stanza, h.cl.DataDir, h.cl.SocketDir, h.cl.Port, repos, assetTail)
}

// walPushWrapper renders the archive_command script that times each push.
// PostgreSQL runs archive_command through /bin/sh with PGDATA as the working
// directory; the script passes %p through unchanged and appends
// "start_ns end_ns exit_code file" to logPath. env ("NAME=value") is set for
// the push command only. The file name of the pgBackRest wrapper contains
// "pgbackrest", which pgBackRest's own check of archive_command looks for.
func walPushWrapper(push, env []string, logPath string) string {
	var quoted []string
	for _, kv := range env {
		// Only the value is quoted: a quoted NAME= is a word, not an assignment.
		name, value, _ := strings.Cut(kv, "=")
		quoted = append(quoted, name+"="+shellQuote(value))
	}
	for _, w := range push {
		quoted = append(quoted, shellQuote(w))
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
		// 0600: with -storage s3 they hold MinIO's credentials.
		if err := h.writeOwned(path, []byte(content), 0o600); err != nil {
			return "", err
		}
	}
	script := h.wrapperPath(t.name)
	if err := h.writeOwned(script, []byte(walPushWrapper(t.push, t.env, h.pushLogPath(t.name))), 0o755); err != nil {
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
