package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/daemon"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

type runsOptions struct {
	asset string
	host  string
	json  bool
	limit int
}

func newRunsCommand(g *globalOptions) *cobra.Command {
	var o runsOptions
	cmd := &cobra.Command{
		Use:   "runs [ASSET]",
		Short: "List the runs lifeboat serve recorded, newest first",
		Long: `List the runs lifeboat serve recorded in the catalog of the policy's
state_dir, newest first: asset, kind, why it started (schedule, catch-up),
when, how long, how it ended (ok, failed, skipped, aborted, or running), the
snapshot and its size, and the error. --json adds the backup's and the
hooks' output. With a fleet catalog (catalog: in the policy) it lists the
runs of every host, with a HOST column; --host keeps one.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = optionalArg(args)
			return runRuns(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON, with the output of each run")
	cmd.Flags().IntVar(&o.limit, "limit", 50, "list at most this many runs (0: all)")
	cmd.Flags().StringVar(&o.host, "host", "", "with a fleet catalog, list only this host's runs")
	return cmd
}

// runRow is one run as runs --json prints it.
type runRow struct {
	Host        string    `json:"host,omitempty"`
	ID          int64     `json:"id"`
	Asset       string    `json:"asset"`
	Kind        string    `json:"kind"`
	Trigger     string    `json:"trigger"`
	Slot        time.Time `json:"slot,omitzero"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end,omitzero"`
	Result      string    `json:"result"`
	Error       string    `json:"error,omitempty"`
	Snapshot    string    `json:"snapshot,omitempty"`
	Bytes       int64     `json:"bytes"`
	BytesStored int64     `json:"bytes_stored"`
	Output      string    `json:"output,omitempty"`
	HookOutput  string    `json:"hook_output,omitempty"`
}

func runRuns(ctx context.Context, g *globalOptions, o runsOptions) error {
	if o.limit < 0 {
		return usagef("--limit must not be negative")
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	p := svc.Policy
	f := catalog.Filter{Limit: o.limit}
	if o.host != "" {
		if !svc.FleetEnabled() {
			return usagef("--host needs a fleet catalog (catalog: in the policy); this host's catalog holds its own runs only")
		}
		f.Hosts = []string{o.host}
	}
	if o.asset != "" {
		f.Assets = []string{o.asset, daemon.DrillKey(o.asset)}
	}
	runs, err := svc.Runs(ctx, f)
	if err != nil {
		return err
	}
	if o.asset != "" && len(runs) == 0 {
		// An asset since removed from the policy keeps its history; a
		// name that is in neither is a typo.
		if _, err := p.Asset(o.asset); err != nil {
			return &usageError{Err: err}
		}
	}
	if o.json {
		rows := make([]runRow, len(runs))
		for i, r := range runs {
			rows[i] = runRow{Host: r.Host, ID: r.ID, Asset: r.Asset, Kind: r.Kind, Trigger: r.Trigger, Slot: r.Slot, Start: r.Start,
				End: r.End, Result: string(r.Result), Error: r.Error, Snapshot: r.Snapshot, Bytes: r.Bytes,
				BytesStored: r.BytesStored, Output: r.Output, HookOutput: r.HookOutput}
		}
		return g.printJSON(rows)
	}
	if len(runs) == 0 && svc.FleetEnabled() {
		fmt.Fprintln(g.stdout, "no runs recorded in the fleet catalog")
		return nil
	}
	if len(runs) == 0 {
		fmt.Fprintf(g.stdout, "no runs recorded in %s\n", catalog.Path(p.StateDir))
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	hostCol := func(string) string { return "" }
	if svc.FleetEnabled() {
		hostCol = func(h string) string { return h + "\t" }
	}
	fmt.Fprintln(tw, hostCol("HOST")+"RUN\tASSET\tKIND\tTRIGGER\tSTART\tDURATION\tRESULT\tSNAPSHOT\tSIZE\tSTORED\tERROR")
	for _, r := range runs {
		dur, snap, size, stored := "-", "-", "-", "-"
		if !r.End.IsZero() {
			dur = roundDuration(r.End.Sub(r.Start)).String()
		}
		if r.Snapshot != "" {
			snap, size, stored = r.Snapshot[:min(8, len(r.Snapshot))], humanBytes(r.Bytes), humanBytes(r.BytesStored)
		}
		fmt.Fprintf(tw, "%s%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", hostCol(r.Host), r.ID, r.Asset, r.Kind, r.Trigger,
			lifeboat.FormatTime(r.Start), dur, r.Result, snap, size, stored,
			strings.ReplaceAll(r.Error, "\t", " "))
	}
	return tw.Flush()
}

// roundDuration keeps tenths of a second for short runs only.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
