package main

import (
	"cmp"
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/fleet"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [ASSET]",
		Short: "Show each asset's newest backup and WAL, and how far each copy lags",
		Long: `Show, for every asset and each of its repositories, the newest snapshot and
the newest archived WAL segment, and for each copy repository how far it lags
its primary: WAL files and snapshots it lacks, the age of the oldest missing
WAL file, and this host's copy queue (entries, bytes, oldest, last error).

With a fleet catalog (catalog: in the policy) it then lists every host's
assets as their agents last published them: HOST, state, newest backup, RPO
now against the tier's target (--json: {"rows": …, "fleet": …}).

It exits 1 when a repository cannot be read.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			asset := optionalArg(args)
			return runStatus(cmd.Context(), g, asset, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// statusRow is one repository of one asset.
type statusRow = app.StatusRow

// repoCache keeps repositories open across checks (see app.Pool).
type repoCache = *app.Pool

func runStatus(ctx context.Context, g *globalOptions, asset string, asJSON bool) error {
	svc, assets, err := g.assetsService(asset)
	if err != nil {
		return err
	}
	now := time.Now()
	rows, failed, err := svc.Status(ctx, assets, now)
	if err != nil {
		return err
	}
	fleetRows, err := svc.FleetAssets(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	switch {
	case asJSON && svc.FleetEnabled():
		if err := g.printJSON(struct {
			Rows  []statusRow   `json:"rows"`
			Fleet []fleet.Asset `json:"fleet"`
		}{rows, fleetRows}); err != nil {
			return err
		}
	case asJSON:
		if err := g.printJSON(rows); err != nil {
			return err
		}
	default:
		if err := printStatus(g, rows, now); err != nil {
			return err
		}
		if svc.FleetEnabled() {
			if err := printFleetAssets(g, fleetRows, now); err != nil {
				return err
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("status: %d repositories could not be read", failed)
	}
	return nil
}

func printStatus(g *globalOptions, rows []statusRow, now time.Time) error {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return lifeboat.FormatTime(t) + " (" + now.Sub(t).Round(time.Second).String() + " ago)"
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ASSET\tREPOSITORY\tROLE\tSNAPSHOTS\tLAST SNAPSHOT\tNEWEST WAL\tLAG")
	var notes []string
	for _, r := range rows {
		lag := "-"
		if r.Lag != nil {
			l := r.Lag
			lag = fmt.Sprintf("%d WAL files (%s), %d snapshots", l.WALFiles, humanBytes(l.WALBytes), l.Snapshots)
			if l.WALFiles > 0 {
				lag += fmt.Sprintf(", oldest %s", time.Duration(l.WALSeconds*float64(time.Second)).Round(time.Second))
			}
			if q := l.Queue; q != nil {
				lag += fmt.Sprintf("; queue %d", q.Entries)
				if q.Entries > 0 {
					lag += fmt.Sprintf(" (%s, oldest %s)", humanBytes(q.Bytes), now.Sub(q.Oldest).Round(time.Second))
				}
				if q.LastError != "" {
					notes = append(notes, fmt.Sprintf("%s: the last copy from the queue failed at %s: %s",
						r.Repository, lifeboat.FormatTime(q.LastErrorTime), q.LastError))
				}
				if q.Damaged > 0 {
					notes = append(notes, fmt.Sprintf("%s: %d damaged queue entries set aside in %s; run lifeboat copy to catch the copy up",
						r.Repository, q.Damaged, q.Dir))
				}
			}
		}
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Repository, r.Error))
		}
		wal := "-"
		if r.NewestWAL != "" {
			wal = r.NewestWAL + " " + ago(r.NewestWALTime)
		}
		last := "-"
		if r.LastSnapshot != "" {
			last = r.LastSnapshot[:8] + " " + ago(r.LastSnapshotTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Asset, r.Repository, r.Role, r.Snapshots, last, wal, lag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(g.stdout, "!", n)
	}
	return nil
}

// printFleetAssets prints every host's assets as published to the fleet
// catalog (status and check).
func printFleetAssets(g *globalOptions, rows []fleet.Asset, now time.Time) error {
	fmt.Fprintf(g.stdout, "\nfleet catalog: %d assets\n", len(rows))
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tASSET\tKIND\tTIER\tSTATE\tLAST BACKUP\tRPO NOW\tRPO TARGET\tPUBLISHED")
	secs := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return (time.Duration(*v * float64(time.Second))).Round(time.Second).String()
	}
	for _, a := range rows {
		last := "-"
		if !a.LastBackup.IsZero() {
			last = lifeboat.FormatTime(a.LastBackup)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s ago\n", a.Host, a.Name, a.Kind, cmp.Or(a.Tier, "-"), a.State, last,
			secs(a.RPOSeconds), secs(a.RPOTargetSeconds), now.Sub(a.Updated).Round(time.Second))
	}
	return tw.Flush()
}
