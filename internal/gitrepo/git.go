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
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/childenv"
)

// gitRunner runs the git binary with an environment fit for unattended
// backups.
type gitRunner struct {
	bin string
	env []string
}

// allowedProtocols are the transports git may use (GIT_ALLOW_PROTOCOL),
// for the remotes and anything they lead to (submodules, redirects):
// local paths, git://, ssh and https. Plain http is left out, since a
// token would cross the network in the clear, and so are the "ext::"
// and "fd::" transports, which run a command of the URL's choosing.
const allowedProtocols = "file:git:ssh:https"

// gitEnv are the variables of this process git keeps besides
// childenv.Base: how it reaches ssh (an agent, a command of the
// operator's choosing), which configuration it reads, proxies and
// certificate authorities. Everything else, storage keys and
// passphrases among it, stays out; so do the variables that point git at
// another repository (GIT_DIR and the like: set by a hook that runs
// lifeboat, they would make every command act on the wrong repository).
var gitEnv = []string{
	"SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT",
	"GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_SYSTEM", "GIT_CONFIG_GLOBAL", "XDG_CONFIG_HOME",
	"GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
	"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
}

func newGitRunner(bin string) (*gitRunner, error) {
	if bin == "" {
		bin = "git"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("git is needed for git assets: %w", err)
	}
	var keep []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(gitEnv, k) {
			keep = append(keep, kv)
		}
	}
	// Credentials come from wherever git takes them (ssh agent, keys,
	// credential helpers) or from the remote's URL (see forRemote); a
	// prompt would hang a nightly run, so git is told never to ask.
	// Messages in English are what errors are summarised from.
	env := childenv.Base(keep...)
	env = append(env, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C", "LANGUAGE=C", "GIT_ALLOW_PROTOCOL="+allowedProtocols)
	return &gitRunner{bin: path, env: env}, nil
}

// credentialHelper answers git's request for credentials from the
// variables forRemote sets. git runs it through the shell, whose command
// line holds only this text: the secret stays in the environment, which
// only this user and root can read.
const credentialHelper = `!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$LIFEBOAT_GIT_USERNAME" "$LIFEBOAT_GIT_PASSWORD"; }; f`

// forRemote returns the runner to use for commands that talk to r, and
// the URL to give them. An http(s) URL's user and password leave the URL,
// which would show in ps and /proc/<pid>/cmdline, for the environment,
// where a credential helper given in GIT_CONFIG_* variables hands them to
// git; the helpers of the system's and the user's configuration are
// cleared first, so that none of them stores the credentials.
func (g *gitRunner) forRemote(r Remote) (*gitRunner, string) {
	u, err := url.Parse(r.URL)
	if err != nil || u.User == nil || !strings.Contains(r.URL, "://") || (u.Scheme != "https" && u.Scheme != "http") {
		return g, r.URL
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	u.User = nil
	env := slices.Concat(g.env, []string{
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=credential.helper", "GIT_CONFIG_VALUE_0=",
		"GIT_CONFIG_KEY_1=credential.helper", "GIT_CONFIG_VALUE_1=" + credentialHelper,
		"LIFEBOAT_GIT_USERNAME=" + user, "LIFEBOAT_GIT_PASSWORD=" + pass,
	})
	return &gitRunner{bin: g.bin, env: env}, u.String()
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
