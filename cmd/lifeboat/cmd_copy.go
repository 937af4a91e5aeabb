package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

func newCopyCommand(g *globalOptions) *cobra.Command {
	var queued bool
	cmd := &cobra.Command{
		Use:   "copy [ASSET]",
		Short: "Bring the copy repositories up to date with their primary",
		Long: `Copy to every copy repository (an asset's repositories after the first) the
objects of its primary that it lacks: packs and index first, then WAL, then
snapshots, so a copy never lists a snapshot before it holds its data. Each
copy restores alone (restore --repository NAME) with the policy and its key.

Before that it sends what this host's copy queues hold (WAL files wal-push
queued). With --queued it sends only those: wal-push starts it in the
background after each file.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			asset := optionalArg(args)
			return runCopy(cmd.Context(), g, asset, queued)
		},
	}
	cmd.Flags().BoolVar(&queued, "queued", false, "only send what the copy queues hold")
	return cmd
}

func runCopy(ctx context.Context, g *globalOptions, asset string, queued bool) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	assets, err := app.SelectAssets(p, asset)
	if err != nil {
		return err
	}
	var copies []*policy.Repository
	for _, a := range assets {
		rps, err := p.AssetRepositories(a)
		if err != nil {
			return &usageError{Err: err}
		}
		for _, cp := range rps[1:] {
			if !slices.Contains(copies, cp) {
				copies = append(copies, cp)
			}
		}
	}
	// A background drainer started by wal-push gives up when another
	// holds a queue; a full copy waits, so that it reports every failure.
	if err := g.drainQueues(ctx, p, copies, !queued); err != nil || queued {
		return err
	}
	done := make(map[[2]string]bool)
	for _, a := range assets {
		rps, err := p.AssetRepositories(a)
		if err != nil {
			return &usageError{Err: err}
		}
		for _, cp := range rps[1:] {
			pair := [2]string{rps[0].Name, cp.Name}
			if done[pair] {
				continue
			}
			done[pair] = true
			src, err := g.openRepository(ctx, rps[0])
			if err != nil {
				return err
			}
			if err := g.syncCopy(ctx, src, rps[0], cp); err != nil {
				return err
			}
		}
	}
	return nil
}

// syncCopy mirrors the primary src (the repository rp) into the copy cp.
func (g *globalOptions) syncCopy(ctx context.Context, src *repo.Repository, rp, cp *policy.Repository) error {
	dst, err := app.OpenBackend(ctx, cp)
	if err != nil {
		return err
	}
	defer dst.Close()
	st, err := src.Sync(ctx, dst)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", rp.Name, cp.Name, err)
	}
	fmt.Fprintf(g.stdout, "copied %d objects (%s) from %s to %s; %d were there already\n",
		st.Objects, humanBytes(st.Bytes), rp.Name, cp.Name, st.Present)
	return nil
}

// primaryOf returns the primary of an asset that lists rp as a copy, or nil
// when no asset does.
func primaryOf(p *policy.Policy, rp *policy.Repository) *policy.Repository {
	for i := range p.Assets {
		a := &p.Assets[i]
		for j, name := range a.Repositories {
			if j > 0 && name == rp.Name {
				primary, err := p.Repository(a.Repositories[0])
				if err == nil {
					return primary
				}
			}
		}
	}
	return nil
}
