package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// globalOptions are the flags every command shares, and what they lead to.
type globalOptions struct {
	configPath string
	verbose    int
	cpuProfile string
	// heapProfile names the file --heap-profile writes at each new high.
	heapProfile string
	// asOwner lets root write file:// repositories another user owns
	// (--as-owner).
	asOwner bool
	// writes says the command writes a repository or state_dir, so it must
	// run as the user Lifeboat runs as on this host (app.RunAs).
	writes bool
	// clockOffset shifts the clock: tests use it to play
	// another host whose clock runs hours ahead, for which locks are stale
	// and data is past its grace period.
	clockOffset time.Duration
	stdout      io.Writer
	stderr      io.Writer
	log         *slog.Logger
	svc         *app.Service
	// report is the result channel of a child of lifeboat serve; nil
	// (doing nothing) otherwise.
	report *daemon.Reporter
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "lifeboat",
		Short: "Backup and disaster recovery for PostgreSQL-centred platforms",
		Long: `Lifeboat backs up PostgreSQL clusters into an encrypted, deduplicated
repository, archives their WAL, and restores them to any point in time.
Everything it protects is described in a policy file (--config).`,
		SilenceUsage:               true,
		SilenceErrors:              true,
		Version:                    currentVersion().String(),
		SuggestionsMinimumDistance: 2,
		// An unknown command is a usage error (exit 2) on one line.
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = " (did you mean " + strings.Join(s, " or ") + "?)"
			}
			return usagef("unknown command %q%s; `lifeboat --help` lists the commands", args[0], hint)
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelWarn
			switch {
			case g.verbose >= 2:
				level = slog.LevelDebug
			case g.verbose == 1:
				level = slog.LevelInfo
			}
			g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			g.writes = writers[topCommand(cmd).Name()]
			if g.cpuProfile != "" {
				f, err := os.Create(g.cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			if g.heapProfile != "" {
				watchHeap(g.heapProfile)
			}
			return nil
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if g.svc != nil {
				if err := g.svc.Close(); err != nil {
					g.log.Warn("close repositories", "error", err)
				}
			}
			if g.cpuProfile != "" {
				pprof.StopCPUProfile()
			}
		},
	}
	def := os.Getenv("LIFEBOAT_CONFIG")
	if def == "" {
		def = "lifeboat.yaml"
	}
	root.PersistentFlags().StringVarP(&g.configPath, "config", "c", def, "policy file (env LIFEBOAT_CONFIG)")
	root.PersistentFlags().CountVarP(&g.verbose, "verbose", "v", "log more (-v info, -vv debug)")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpu-profile", "", "write a CPU profile to this file (for performance work)")
	root.PersistentFlags().MarkHidden("cpu-profile")
	root.PersistentFlags().StringVar(&g.heapProfile, "heap-profile", "", "write the heap profile to this file at each new high (for memory work)")
	root.PersistentFlags().MarkHidden("heap-profile")
	root.PersistentFlags().BoolVar(&g.asOwner, "as-owner", false, "as root, act as the user Lifeboat runs as here (the policy's user, the owner of state_dir or of a file:// repository), so what is written belongs to it")
	root.PersistentFlags().DurationVar(&g.clockOffset, "clock-offset", 0, "shift the clock (for tests)")
	root.PersistentFlags().MarkHidden("clock-offset")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{Err: err} })
	root.AddCommand(
		newRepoCommand(g),
		newBackupCommand(g),
		newWALPushCommand(g),
		newWALFetchCommand(g),
		newWALStreamCommand(g),
		newRestoreCommand(g),
		newExportCommand(g),
		newSnapshotsCommand(g),
		newDiffCommand(g),
		newVerifyCommand(g),
		newRestorePointCommand(g),
		newDoctorCommand(g),
		newCopyCommand(g),
		newStatusCommand(g),
		newExpireCommand(g),
		newPinCommand(g),
		newUnpinCommand(g),
		newForgetCommand(g),
		newInfoCommand(g),
		newServeCommand(g),
		newRunsCommand(g),
		newDrillCommand(g),
		newCheckCommand(g),
		newReportCommand(g),
		newRunbookCommand(g),
		newAuditCommand(g),
		newApprovalsCommand(g),
		newApproveCommand(g),
		newWebCommand(g),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  exactArgs(0, "no arguments"),
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(g.stdout, "lifeboat version", currentVersion()) },
		},
	)
	addCompletions(g, root)
	return root
}

// exactArgs is cobra.ExactArgs with a usage exit code.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d arguments)", cmd.Name(), names, len(args))
		}
		return nil
	}
}

// atMostOneAsset is the argument check of commands that work on one asset
// or on all of them.
func atMostOneAsset(cmd *cobra.Command, args []string) error {
	if len(args) > 1 {
		return usagef("%s takes at most one ASSET", cmd.Name())
	}
	return nil
}

// optionalArg is the one optional argument, or "".
func optionalArg(args []string) string {
	if len(args) == 1 {
		return args[0]
	}
	return ""
}

// assetsService is the service (closed with the command, see service) and
// the asset named, or every asset when name is "".
func (g *globalOptions) assetsService(name string) (*app.Service, []*policy.Asset, error) {
	svc, err := g.service()
	if err != nil {
		return nil, nil, err
	}
	assets, err := app.SelectAssets(svc.Policy, name)
	if err != nil {
		return nil, nil, err
	}
	return svc, assets, nil
}

// policy loads the policy file afresh, with every kind of the registry.
func (g *globalOptions) policy() (*policy.Policy, error) {
	p, err := app.LoadPolicy(g.configPath, app.Kinds())
	if err != nil {
		return nil, err
	}
	for i := range p.Repositories {
		p.Repositories[i].WriteAsOwner = g.asOwner
	}
	if g.writes {
		u, err := app.RunAs(p, g.asOwner)
		if err != nil {
			return nil, err
		}
		if u != nil {
			if err := app.Become(u); err != nil {
				return nil, err
			}
			g.log.Info("running as the policy's user", "user", u.Username)
		}
	}
	return p, nil
}

// writers are the commands that write a repository or state_dir: they run
// only as the user Lifeboat runs as on this host (see app.RunAs). The
// others only read, and anyone allowed to read may run them.
var writers = map[string]bool{
	"repo": true, "backup": true, "wal-push": true, "copy": true, "expire": true, "pin": true, "unpin": true,
	"forget": true, "restore-point": true, "serve": true, "drill": true, "check": true, "audit": true,
	"approve": true, "web": true,
}

// topCommand is the command under the root that cmd belongs to ("repo"
// for "repo init").
func topCommand(cmd *cobra.Command) *cobra.Command {
	for cmd.HasParent() && cmd.Parent().HasParent() {
		cmd = cmd.Parent()
	}
	return cmd
}

// service is the application service for this run's policy, loaded once;
// PersistentPostRun closes it.
func (g *globalOptions) service() (*app.Service, error) {
	if g.svc != nil {
		return g.svc, nil
	}
	p, err := g.policy()
	if err != nil {
		return nil, err
	}
	svc := app.New(p, app.Options{Log: g.log, Now: g.now(time.Now)})
	g.svc = svc
	return svc, nil
}

// now is the clock of the command: base, shifted by --clock-offset.
func (g *globalOptions) now(base func() time.Time) func() time.Time {
	if off := g.clockOffset; off != 0 {
		return func() time.Time { return base().Add(off) }
	}
	return base
}

// asset loads the policy and finds an asset in it.
func (g *globalOptions) asset(name string) (*policy.Policy, *policy.Asset, error) {
	p, err := g.policy()
	if err != nil {
		return nil, nil, err
	}
	a, err := p.Asset(name)
	if err != nil {
		return nil, nil, &usageError{Err: err}
	}
	return p, a, nil
}

// openRepository opens one repository of the policy.
func (g *globalOptions) openRepository(ctx context.Context, rp *policy.Repository) (*repo.Repository, error) {
	return app.OpenRepository(ctx, rp, g.log, g.now(time.Now))
}

// assetRepositoryNamed is the asset's repository called name, or its
// primary when name is empty.
func assetRepositoryNamed(p *policy.Policy, a *policy.Asset, name string) (*policy.Repository, error) {
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return nil, &usageError{Err: err}
	}
	if name == "" {
		return rps[0], nil
	}
	for _, rp := range rps {
		if rp.Name == name {
			return rp, nil
		}
	}
	return nil, usagef("asset %s does not use repository %q (it uses %v)", a.Name, name, a.Repositories)
}

// isTerminal reports whether w is an interactive terminal (for progress).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// selfCommand is how PostgreSQL calls this lifeboat back (restore_command):
// absolute paths, shell-quoted.
func (g *globalOptions) selfCommand(args ...string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	cfg, err := filepath.Abs(g.configPath)
	if err != nil {
		return "", err
	}
	parts := []string{shellQuote(exe), "-c", shellQuote(cfg)}
	for _, a := range args {
		if a == "%f" || a == "%p" {
			parts = append(parts, a)
		} else {
			parts = append(parts, shellQuote(a))
		}
	}
	return strings.Join(parts, " "), nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func humanBytes(n int64) string { return asset.HumanBytes(n) }

// printJSON writes v to standard output as indented JSON (--json).
func (g *globalOptions) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
