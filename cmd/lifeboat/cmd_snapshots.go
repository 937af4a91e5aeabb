package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
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

// snapshotRow is one snapshot as listings show it.
type snapshotRow struct {
	ID          string    `json:"id"`
	Repository  string    `json:"repository"`
	Asset       string    `json:"asset"`
	Kind        string    `json:"kind"`
	Type        string    `json:"type"`
	Parent      string    `json:"parent,omitempty"`
	StartTime   time.Time `json:"start_time"`
	StopTime    time.Time `json:"stop_time"`
	StartLSN    string    `json:"start_lsn,omitempty"`
	StopLSN     string    `json:"stop_lsn,omitempty"`
	Timeline    uint32    `json:"timeline,omitempty"`
	Files       int64     `json:"files"`
	BytesTotal  int64     `json:"bytes_total"`
	BytesRead   int64     `json:"bytes_read"`
	BytesNew    int64     `json:"bytes_new"`
	BytesStored int64     `json:"bytes_stored"`
	Name        string    `json:"name,omitempty"` // a logical dump's <asset>_<YYYY-MM-DD>
}

func runSnapshots(ctx context.Context, g *globalOptions, o snapshotsOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	var repos []*policy.Repository
	if o.repository == "" && o.asset != "" {
		a, err := p.Asset(o.asset)
		if err != nil {
			return &usageError{Err: err}
		}
		if repos, err = p.AssetRepositories(a); err != nil {
			return &usageError{Err: err}
		}
		repos = repos[:1]
	} else if repos, err = app.NamedOrAllRepositories(p, o.repository); err != nil {
		return err
	}
	rows := []snapshotRow{}
	for _, rp := range repos {
		r, err := g.openRepository(ctx, rp)
		if err != nil {
			return err
		}
		snaps, err := r.Snapshots(ctx, o.asset)
		if err != nil {
			return fmt.Errorf("repository %s: %w", rp.Name, err)
		}
		for _, s := range snaps {
			rows = append(rows, rowFor(rp.Name, s))
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].StopTime.Before(rows[j].StopTime) })
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tASSET\tTYPE\tSTOP TIME\tSTOP LSN\tTLI\tSIZE\tNEW\tSTORED\tDURATION\tNAME")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.ID[:8], r.Asset, r.Type,
			r.StopTime.Local().Format("2006-01-02 15:04:05"), r.StopLSN, r.Timeline, humanBytes(r.BytesTotal),
			humanBytes(r.BytesNew), humanBytes(r.BytesStored), r.StopTime.Sub(r.StartTime).Round(time.Second), r.Name)
	}
	return tw.Flush()
}

func rowFor(repoName string, s *repo.Snapshot) snapshotRow {
	row := snapshotRow{ID: s.ID.String(), Repository: repoName, Asset: s.Asset, Kind: s.Kind, Type: s.Type,
		StartTime: s.StartTime, StopTime: s.EndTime, Files: s.Stats.Files, BytesTotal: s.Stats.BytesTotal,
		BytesRead: s.Stats.BytesRead, BytesNew: s.Stats.BytesNew, BytesStored: s.Stats.BytesStored}
	if s.Parent != nil {
		row.Parent = s.Parent.String()
	}
	d := app.Kinds().Describe(s)
	row.Name, row.StartLSN, row.StopLSN, row.Timeline, row.StopTime = d.Name, d.StartLSN, d.StopLSN, d.Timeline, d.StopTime
	return row
}
