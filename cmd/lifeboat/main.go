// Command lifeboat backs up PostgreSQL clusters into an encrypted,
// deduplicated repository, archives their WAL and restores them to any
// point in time. main.go is the only place that turns errors into exit
// codes.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/approval"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Exit codes. wal-fetch has its own: PostgreSQL ends recovery on any
// failure of restore_command except an exit status above 125, which stops
// it; only "file absent" may therefore exit 1.
const (
	exitOK            = 0
	exitFailure       = 1
	exitUsage         = 2
	exitApproval      = 3 // a protected action needs approval: request created (docs/approvals.md)
	exitWALFetchAbort = 200
)

// usageError marks errors in how lifeboat was called or configured; the
// kinds and the service return the same type.
type usageError = asset.UsageError

func usagef(format string, args ...any) error { return asset.Usagef(format, args...) }

// walFetchError carries wal-fetch's exit status.
type walFetchError struct{ err error }

func (e *walFetchError) Error() string { return e.err.Error() }
func (e *walFetchError) Unwrap() error { return e.err }

// memoryLimit is the soft heap limit: backups stream through bounded
// buffers, and the garbage collector keeps the heap near this instead of
// letting it double between collections. GOMEMLIMIT overrides it.
const memoryLimit = 160 << 20

func main() {
	// Whatever Lifeboat creates (state, catalog, scratch copies of dumps,
	// exports, mirrors) is its owner's alone, and so is what its children
	// create, unless a file's mode is set on purpose (a restore gives each
	// file the mode it was backed up with).
	syscall.Umask(0o077)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:]))
}

func run(ctx context.Context, args []string) int {
	// A child of lifeboat serve reports how it ended (internal/daemon).
	g := &globalOptions{stdout: os.Stdout, stderr: os.Stderr, report: daemon.OpenReporter()}
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if rerr := g.report.Finish(ctx, err, oneLine); rerr != nil {
		fmt.Fprintln(os.Stderr, "warning: "+oneLine(rerr))
	}
	if err == nil {
		return exitOK
	}
	cmd, _, ferr := root.Find(args)
	archiving := ferr == nil && (cmd.Name() == "wal-fetch" || cmd.Name() == "wal-push")
	// Whatever went wrong in wal-fetch (a flag, the policy, the repository)
	// must not read as "file absent" to PostgreSQL.
	if archiving && cmd.Name() == "wal-fetch" {
		var wf *walFetchError
		if !errors.As(err, &wf) {
			err = &walFetchError{err}
		}
	}
	// A policy's problems are one per line, as an editor lists them; what
	// PostgreSQL logs for its archive and restore commands stays one line.
	var fe *policy.FieldError
	if !archiving && errors.As(err, &fe) {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "lifeboat: "+line)
		}
		return exitCode(err)
	}
	fmt.Fprintln(os.Stderr, "lifeboat: "+oneLine(err))
	return exitCode(err)
}

func exitCode(err error) int {
	var wf *walFetchError
	if errors.As(err, &wf) {
		if errors.Is(err, postgres.ErrWALNotFound) {
			return exitFailure
		}
		return exitWALFetchAbort
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	var ae *approval.RequiredError
	if errors.As(err, &ae) {
		return exitApproval
	}
	return exitFailure
}

// oneLine keeps an error on one line for the terminal and for logs that
// PostgreSQL collects from archive and restore commands.
func oneLine(err error) string {
	msg := err.Error()
	if errors.Is(err, repo.ErrWrongKey) && !strings.Contains(msg, "wrong key") {
		msg += " (wrong key)"
	}
	return strings.ReplaceAll(msg, "\n", "; ")
}
