package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
)

func newInfoCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info [ASSET] [--json]",
		Short: "Show what each repository can restore: snapshots, recoverable windows, restore points, pins, copies' lag",
		Long: `Show, for every asset (or one) and each of its repositories, what a restore
can use: the snapshots with their sizes, for PostgreSQL the recoverable window
of each timeline (the earliest and latest moment and LSN a restore can reach),
the restore points recorded, the legal holds, and how far each copy lags.

The latest moment is the newest commit in the archived WAL, read with
pg_waldump when it is installed; otherwise when the last WAL segment was
stored, marked "at most". It exits 1 when a repository cannot be read.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, assets, err := g.assetsService(optionalArg(args))
			if err != nil {
				return err
			}
			now := svc.Now()
			infos, err := svc.Info(cmd.Context(), assets, now)
			if err != nil {
				return err
			}
			if asJSON {
				if err := g.printJSON(infos); err != nil {
					return err
				}
			} else {
				printInfo(g.stdout, infos, now)
			}
			failed := 0
			for _, ai := range infos {
				for _, ri := range ai.Repositories {
					if ri.Status.Error != "" {
						failed++
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("info: %s could not be read", plural(failed, "repository"))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printInfo(w io.Writer, infos []app.AssetInfo, now time.Time) {
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return lifeboat.FormatPreciseTime(t)
	}
	for i, ai := range infos {
		if i > 0 {
			fmt.Fprintln(w)
		}
		tier := ""
		if ai.Tier != "" {
			tier = ", tier " + ai.Tier
		}
		fmt.Fprintf(w, "%s (%s%s)\n", ai.Asset, ai.Kind, tier)
		for _, ri := range ai.Repositories {
			st := ri.Status
			fmt.Fprintf(w, "  repository %s (%s)", st.Repository, st.Role)
			if st.Error != "" {
				fmt.Fprintf(w, ": cannot be read: %s\n", st.Error)
				continue
			}
			fmt.Fprintf(w, ": %s, %s stored\n", plural(len(ri.Snapshots), "snapshot"), humanBytes(ri.BytesStored))
			if st.NewestWAL != "" {
				fmt.Fprintf(w, "    newest WAL %s, stored %s (%s ago)\n", st.NewestWAL, at(st.NewestWALTime), now.Sub(st.NewestWALTime).Round(time.Second))
			}
			if lag := st.Lag; lag != nil {
				fmt.Fprintf(w, "    behind its primary by %s and %s", plural(lag.Snapshots, "snapshot"), plural(lag.WALFiles, "WAL file"))
				if lag.WALSeconds > 0 {
					fmt.Fprintf(w, " (oldest missing archived %s ago)", (time.Duration(lag.WALSeconds) * time.Second).String())
				}
				fmt.Fprintln(w)
			}
			for _, win := range ri.Windows {
				latest := "newest commit"
				if !win.LatestExact {
					latest = "at most: when the last segment was stored"
				}
				fmt.Fprintf(w, "    timeline %d: restorable from %s (LSN %s, snapshot %.8s) to %s (LSN %s, %s)\n", win.Timeline,
					at(win.EarliestTime), win.EarliestPosition, win.EarliestSnapshot, at(win.LatestTime),
					win.LatestPosition, latest)
				if win.Gap != "" {
					fmt.Fprintf(w, "    timeline %d: WAL segment %s is missing while later ones are archived: recovery stops there\n", win.Timeline, win.Gap)
				}
			}
			for _, p := range ri.RestorePoints {
				fmt.Fprintf(w, "    restore point %q at %s (LSN %s, timeline %d)\n", p.Name, at(p.Time), p.LSN, p.Timeline)
			}
			for _, p := range ri.Pins {
				until := ""
				if !p.Until.IsZero() {
					until = ", until " + lifeboat.FormatTime(p.Until)
				}
				fmt.Fprintf(w, "    pinned %.8s by %s: %s%s\n", p.Snapshot, p.By, p.Reason, until)
			}
			if len(ri.Snapshots) == 0 {
				continue
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "    SNAPSHOT\tTYPE\tEND\tTIMELINE\tSTOP LSN\tSIZE\tSTORED")
			for _, s := range ri.Snapshots {
				tli, lsn := "-", "-"
				if s.Timeline != 0 {
					tli, lsn = fmt.Sprint(s.Timeline), s.StopLSN
				}
				fmt.Fprintf(tw, "    %.8s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Type, at(s.StopTime), tli, lsn, humanBytes(s.BytesTotal), humanBytes(s.BytesStored))
			}
			tw.Flush()
		}
	}
}
