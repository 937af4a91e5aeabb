package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
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

func runCopy(ctx context.Context, g *globalOptions, assetName string, queued bool) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	copied, err := svc.Copy(ctx, assetName, queued)
	for _, c := range copied {
		g.printCopied(c)
	}
	return err
}

func (g *globalOptions) printCopied(c app.Copied) {
	fmt.Fprintf(g.stdout, "copied %d objects (%s) from %s to %s; %d were there already\n",
		c.Stats.Objects, humanBytes(c.Stats.Bytes), c.From, c.To, c.Stats.Present)
	for _, u := range c.Stats.Skipped {
		fmt.Fprintf(g.stdout, "not copied: %s in %s is not authentic (planted without the key, or damaged): %s\n", u.Name, c.From, u.Reason)
	}
	for _, n := range c.Stats.Squatted {
		fmt.Fprintf(g.stdout, "%s in %s holds another object that is not authentic; named objects went to their alternate name\n", n, c.To)
	}
}
