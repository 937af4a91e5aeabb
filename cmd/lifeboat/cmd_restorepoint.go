package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
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

func runRestorePoint(ctx context.Context, g *globalOptions, assetName, name string) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	rp, err := svc.RestorePoint(ctx, assetName, name)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "restore point %q of %s at LSN %s (%s)\n", rp.Name, assetName, rp.LSN, rp.Time.Format("2006-01-02 15:04:05 MST"))
	return nil
}
