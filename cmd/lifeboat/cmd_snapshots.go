package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

type snapshotsOptions struct {
	asset      string
	json       bool
	repository string
}

func newSnapshotsCommand(g *globalOptions) *cobra.Command {
	var o snapshotsOptions
	cmd := &cobra.Command{
		Use:   "snapshots [ASSET]",
		Short: "List snapshots",
		Args:  atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = optionalArg(args)
			return runSnapshots(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().StringVar(&o.repository, "repository", "", "list this repository only (default: the asset's primary, or every repository)")
	return cmd
}

type snapshotRow = app.SnapshotRow

func runSnapshots(ctx context.Context, g *globalOptions, o snapshotsOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	rows, err := svc.Snapshots(ctx, o.asset, o.repository)
	if err != nil {
		return err
	}
	if o.json {
		return g.printJSON(rows)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tASSET\tTYPE\tSTOP TIME\tSTOP LSN\tTLI\tSIZE\tNEW\tSTORED\tDURATION\tNAME")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID[:8], r.Asset, r.Type,
			lifeboat.FormatTime(r.StopTime), r.StopLSN, r.Timeline, humanBytes(r.BytesTotal),
			humanBytes(r.BytesNew), humanBytes(r.BytesStored), r.StopTime.Sub(r.StartTime).Round(time.Second), r.Name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Holds under the table, so the table's columns stay as scripts read them.
	for _, r := range rows {
		if p := r.Pin; p != nil {
			fmt.Fprintf(g.stdout, "held: %s in %s since %s by %s: %s\n", r.ID[:8], r.Repository, lifeboat.FormatTime(p.Created), p.By, p.Reason)
		}
	}
	return nil
}
