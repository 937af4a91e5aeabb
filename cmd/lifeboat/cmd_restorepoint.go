package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/spf13/cobra"
)

func newRestorePointCommand(g *globalOptions) *cobra.Command {
	var list bool
	cmd := &cobra.Command{
		Use:   "restore-point ASSET NAME | --list ASSET",
		Short: "Create a named restore point (before a migration, say), or list them",
		Long: `Create a named restore point on the server and record it in the repository,
so that "restore --name NAME" recovers to exactly that moment from a base that
precedes it. With --list, show the restore points recorded for the asset.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list {
				return exactArgs(1, "ASSET")(cmd, args)
			}
			return exactArgs(2, "ASSET NAME")(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if list {
				return listRestorePoints(cmd.Context(), g, args[0])
			}
			return runRestorePoint(cmd.Context(), g, args[0], args[1])
		},
	}
	cmd.Flags().BoolVar(&list, "list", false, "list the restore points recorded for ASSET")
	return cmd
}

func listRestorePoints(ctx context.Context, g *globalOptions, assetName string) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	points, err := svc.RestorePoints(ctx, assetName)
	if err != nil {
		return err
	}
	if len(points) == 0 {
		fmt.Fprintf(g.stdout, "no restore point is recorded for %s\n", assetName)
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTIME\tLSN\tTIMELINE")
	for _, p := range points {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", p.Name, lifeboat.FormatPreciseTime(p.Time), p.LSN, p.Timeline)
	}
	return tw.Flush()
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
