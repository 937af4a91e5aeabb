package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
)

func newRestorePointCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "restore-point ASSET NAME",
		Short: "Create a named restore point (before a migration, say)",
		Long: `Create a named restore point on the server and record it in the repository,
so that "restore --name NAME" recovers to exactly that moment from a base that
precedes it.`,
		Args: exactArgs(2, "ASSET NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestorePoint(cmd.Context(), g, args[0], args[1])
		},
	}
}

func runRestorePoint(ctx context.Context, g *globalOptions, asset, name string) error {
	p, a, err := g.asset(asset)
	if err != nil {
		return err
	}
	if a.Kind != lifeboat.KindPostgres {
		return usagef("asset %s: restore points exist for postgres assets only", a.Name)
	}
	r, err := g.primaryRepository(ctx, p, a)
	if err != nil {
		return err
	}
	rp, err := postgres.RecordRestorePoint(ctx, r, a.Name, a.DSN, name)
	if err != nil {
		return fmt.Errorf("restore point %s: %w", name, err)
	}
	fmt.Fprintf(g.stdout, "restore point %q of %s at LSN %s (%s)\n", rp.Name, a.Name, rp.LSN, rp.Time.Format("2006-01-02 15:04:05 MST"))
	return nil
}
