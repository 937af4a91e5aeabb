package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	storagefs "github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

func newRepoCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Manage repositories",
	}
	cmd.AddCommand(newRepoInitCommand(g))
	return cmd
}

type repoInitOptions struct {
	names []string
}

func newRepoInitCommand(g *globalOptions) *cobra.Command {
	var o repoInitOptions
	return &cobra.Command{
		Use:   "init [REPOSITORY...]",
		Short: "Create the repositories of the policy (all, or those named)",
		Long: `Create repositories. A repository with a key_file that does not exist yet
gets a new random key file; keep a copy of it somewhere safe: without it no
backup in the repository can be read.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return runRepoInit(cmd.Context(), g, o)
		},
	}
}

func runRepoInit(ctx context.Context, g *globalOptions, o repoInitOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	var targets []*policy.Repository
	if len(o.names) == 0 {
		for i := range p.Repositories {
			targets = append(targets, &p.Repositories[i])
		}
	}
	for _, n := range o.names {
		rp, err := p.Repository(n)
		if err != nil {
			return &usageError{Err: err}
		}
		targets = append(targets, rp)
	}
	// Copies take their primary's key, so primaries come first.
	sort.SliceStable(targets, func(i, j int) bool {
		return p.PrimaryOf(targets[i].Name) == nil && p.PrimaryOf(targets[j].Name) != nil
	})
	for _, rp := range targets {
		if err := initRepository(ctx, g, p, rp); err != nil {
			return err
		}
	}
	return nil
}

func initRepository(ctx context.Context, g *globalOptions, p *policy.Policy, rp *policy.Repository) error {
	if rp.KeyFile != "" {
		if _, err := os.Stat(rp.KeyFile); errors.Is(err, fs.ErrNotExist) {
			if err := repo.GenerateKeyFile(rp.KeyFile); err != nil {
				return fmt.Errorf("repository %s: %w", rp.Name, err)
			}
			fmt.Fprintf(g.stdout, "created key file %s: keep a copy apart from the repository; without it the backups cannot be read\n", rp.KeyFile)
		}
	}
	u, err := url.Parse(rp.URL)
	if err != nil {
		return &usageError{Err: fmt.Errorf("repository %s: url: %w", rp.Name, err)}
	}
	if u.Scheme == "file" {
		if err := storagefs.Create(u.Path); err != nil {
			return fmt.Errorf("repository %s: %w", rp.Name, err)
		}
	}
	be, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	defer be.Close()
	sec, err := app.SecretFor(rp)
	if err != nil {
		return err
	}
	if primary := p.PrimaryOf(rp.Name); primary != nil {
		src, err := g.openRepository(ctx, primary)
		if err != nil {
			return fmt.Errorf("repository %s copies %s, which must be initialized first: %w", rp.Name, primary.Name, err)
		}
		if err := src.InitCopy(ctx, be, sec); err != nil {
			return fmt.Errorf("init repository %s: %w", rp.Name, err)
		}
		fmt.Fprintf(g.stdout, "initialized repository %s at %s as a copy of %s\n", rp.Name, be.Location(), primary.Name)
		return nil
	}
	cfg, err := repo.Init(ctx, be, sec, repo.InitOptions{})
	if err != nil {
		return fmt.Errorf("init repository %s: %w", rp.Name, err)
	}
	fmt.Fprintf(g.stdout, "initialized repository %s at %s (id %s, block size %s)\n", rp.Name, be.Location(), cfg.ID[:8], humanBytes(int64(cfg.BlockSize)))
	return nil
}
