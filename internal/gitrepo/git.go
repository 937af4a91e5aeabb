// Package gitrepo backs up git repositories (the git asset kind): every
// ref and object of each remote, mirrored with the installed git and
// stored as the files of a bare repository through treestore, and
// restores them as bare repositories that git fsck accepts and whose refs
// equal those recorded at backup time.
//
// Mirrors are kept between runs under the state directory, so a nightly
// backup fetches only what is new and the large pack files of a
// repository stay byte for byte the same from one night to the next: they
// are stored once, and only the new small packs are new data.
package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// gitRunner runs the git binary with an environment fit for unattended
// backups.
type gitRunner struct {
	bin string
	env []string
}

// repoEnv are the variables that point git at another repository, index
// or object store: set by a hook that runs lifeboat, they would make every
// command act on the wrong repository.
var repoEnv = []string{
	"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
	"GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_QUARANTINE_PATH", "GIT_PREFIX", "GIT_CEILING_DIRECTORIES",
	"GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_REPLACE_REF_BASE", "GIT_NO_REPLACE_OBJECTS",
}

func newGitRunner(bin string) (*gitRunner, error) {
	if bin == "" {
		bin = "git"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("git is needed for git assets: %w", err)
	}
	env := make([]string, 0, len(os.Environ())+3)
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := k == "LC_ALL" || k == "LANGUAGE"
		for _, r := range repoEnv {
			drop = drop || k == r
		}
		if !drop {
			env = append(env, kv)
		}
	}
	// Credentials come from wherever git takes them (ssh agent, keys,
	// credential helpers); a prompt would hang a nightly run, so git is
	// told never to ask. Messages in English are what errors are
	// summarised from.
	env = append(env, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "LANGUAGE=C")
	return &gitRunner{bin: path, env: env}, nil
}

// run runs git with args in dir and returns its standard output. Its
// standard error becomes the error's text when it fails.
func (g *gitRunner) run(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, g.bin, args...)
	cmd.Dir = dir
	cmd.Env = g.env
	// A session of its own has no controlling terminal, so neither ssh
	// (passphrase, unknown host key) nor a credential helper can stop to
	// ask on /dev/tty: they fail, and the backup says so.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// SIGTERM to the whole group lets git remove its lock and temporary
	// files and takes ssh down with it; SIGKILL follows if it lingers.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	name := subcommand(args)
	var out bytes.Buffer
	errb := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = &out, errb
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("git %s: %w", name, ctx.Err())
		}
		return nil, &gitError{cmd: name, msg: summarize(errb.String()), err: err}
	}
	return out.Bytes(), nil
}

// subcommand is the git command args run, after the -c options.
func subcommand(args []string) string {
	for i := 0; i < len(args); i++ {
		if args[i] == "-c" {
			i++
			continue
		}
		return args[i]
	}
	return ""
}

// gitError is a failed git command, with the line of its standard error
// that says why (credentials in URLs already redacted).
type gitError struct {
	cmd string
	msg string
	err error
}

func (e *gitError) Error() string {
	msg := e.msg
	if msg == "" {
		msg = e.err.Error()
	}
	if strings.Contains(msg, "dubious ownership") {
		msg += " (the repository belongs to another user: trust it with git config --global --add safe.directory PATH as the user running lifeboat)"
	}
	return fmt.Sprintf("git %s: %s", e.cmd, msg)
}

func (e *gitError) Unwrap() error { return e.err }

// summarize picks the line of git's standard error worth showing: the
// first fatal or error line (git follows them with generic advice), else
// the last line.
func summarize(stderr string) string {
	var last string
	for _, line := range strings.Split(stderr, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "fatal:") || strings.HasPrefix(line, "error:") {
			return RedactText(line)
		}
		last = line
	}
	return RedactText(last)
}

// tailBuffer keeps the last max bytes written to it: a chatty command
// cannot grow memory without bound.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }

// isExit reports whether err is git exiting with status code.
func isExit(err error, code int) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == code
}
