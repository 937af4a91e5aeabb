package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// globalOptions are the flags every command shares, and what they lead to.
type globalOptions struct {
	configPath string
	verbose    int
	cpuProfile string
	// clockOffset shifts the repository clock: tests use it to play
	// another host whose clock runs hours ahead, for which locks are stale
	// and data is past its grace period.
	clockOffset time.Duration
	stdout      io.Writer
	stderr      io.Writer
	log         *slog.Logger
}

func newRootCommand(g *globalOptions) *cobra.Command {
	root := &cobra.Command{
		Use:   "lifeboat",
		Short: "Backup and disaster recovery for PostgreSQL-centred platforms",
		Long: `Lifeboat backs up PostgreSQL clusters into an encrypted, deduplicated
repository, archives their WAL, and restores them to any point in time.
Everything it protects is described in a policy file (--config).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level := slog.LevelWarn
			switch {
			case g.verbose >= 2:
				level = slog.LevelDebug
			case g.verbose == 1:
				level = slog.LevelInfo
			}
			g.log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
			if g.cpuProfile != "" {
				f, err := os.Create(g.cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			return nil
		},
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
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
	root.PersistentFlags().DurationVar(&g.clockOffset, "clock-offset", 0, "shift the repository clock (for tests)")
	root.PersistentFlags().MarkHidden("clock-offset")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })
	root.AddCommand(
		newRepoCommand(g),
		newBackupCommand(g),
		newWALPushCommand(g),
		newWALFetchCommand(g),
		newRestoreCommand(g),
		newExportCommand(g),
		newSnapshotsCommand(g),
		newDiffCommand(g),
		newVerifyCommand(g),
		newRestorePointCommand(g),
		newCopyCommand(g),
		newStatusCommand(g),
		newExpireCommand(g),
		newPinCommand(g),
		newUnpinCommand(g),
		newServeCommand(g),
		newRunsCommand(g),
		newDrillCommand(g),
		newCheckCommand(g),
		newReportCommand(g),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  exactArgs(0, "no arguments"),
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(g.stdout, "lifeboat", version) },
		},
	)
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

func (g *globalOptions) policy() (*policy.Policy, error) {
	p, err := policy.Load(g.configPath)
	if err != nil {
		return nil, &usageError{err}
	}
	return p, nil
}

// asset loads the policy and finds an asset in it.
func (g *globalOptions) asset(name string) (*policy.Policy, *policy.Asset, error) {
	p, err := g.policy()
	if err != nil {
		return nil, nil, err
	}
	a, err := p.Asset(name)
	if err != nil {
		return nil, nil, &usageError{err}
	}
	return p, a, nil
}

// openBackend turns a repository URL into a storage backend, wrapped in
// the retry decorator.
func openBackend(ctx context.Context, rp *policy.Repository) (storage.Backend, error) {
	u, err := url.Parse(rp.URL)
	if err != nil {
		return nil, fmt.Errorf("repository %s: url: %w", rp.Name, err)
	}
	switch u.Scheme {
	case "file":
		be, err := fs.New(u.Path)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return retry.New(be, retry.Options{}), nil
	case "s3":
		opts, err := s3.ParseURL(rp.URL)
		if err != nil {
			return nil, &usageError{fmt.Errorf("repository %s: %w", rp.Name, err)}
		}
		opts.AccessKey, opts.SecretKey = rp.AccessKey.Reveal(), rp.SecretKey.Reveal()
		if rp.ObjectLock != "" {
			opts.LockMode, opts.RetainFor = rp.ObjectLock, rp.LockFor.Std()
		}
		be, err := s3.New(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return retry.New(be, retry.Options{}), nil
	}
	return nil, &usageError{fmt.Errorf("repository %s: unsupported url scheme %q", rp.Name, u.Scheme)}
}

func secretFor(rp *policy.Repository) (repo.Secret, error) {
	if rp.KeyFile != "" {
		s, err := repo.KeyFile(rp.KeyFile)
		if err != nil {
			return s, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return s, nil
	}
	s, err := repo.Passphrase(rp.Passphrase.Reveal())
	if err != nil {
		return s, &usageError{fmt.Errorf("repository %s: %w", rp.Name, err)}
	}
	return s, nil
}

// openRepository opens one repository of the policy.
func (g *globalOptions) openRepository(ctx context.Context, rp *policy.Repository) (*repo.Repository, error) {
	be, err := openBackend(ctx, rp)
	if err != nil {
		return nil, err
	}
	sec, err := secretFor(rp)
	if err != nil {
		return nil, err
	}
	r, err := repo.Open(ctx, be, sec, g.log)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		return nil, fmt.Errorf("open repository %s: %w", rp.Name, err)
	}
	if off := g.clockOffset; off != 0 {
		r.Clock = func() time.Time { return time.Now().Add(off) }
	}
	return r, nil
}

// primaryRepository opens the first repository of an asset.
func (g *globalOptions) primaryRepository(ctx context.Context, p *policy.Policy, a *policy.Asset) (*repo.Repository, error) {
	return g.assetRepository(ctx, p, a, "")
}

// assetRepository opens the asset's repository called name, or its primary
// when name is empty.
func (g *globalOptions) assetRepository(ctx context.Context, p *policy.Policy, a *policy.Asset, name string) (*repo.Repository, error) {
	rps, err := p.AssetRepositories(a)
	if err != nil {
		return nil, &usageError{err}
	}
	if name == "" {
		return g.openRepository(ctx, rps[0])
	}
	for _, rp := range rps {
		if rp.Name == name {
			return g.openRepository(ctx, rp)
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

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
