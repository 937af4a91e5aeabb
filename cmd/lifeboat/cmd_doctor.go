package main

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
)

func newDoctorCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "doctor [ASSET] [--json]",
		Short: "Probe the set-up: archiving, a WAL round trip, repositories, permissions, state_dir, clocks",
		Long: `Probe what protecting every asset (or one) depends on, one line a probe
(ok, warn or FAIL, what was found, and the fix), and exit 1 when a probe fails:

  policy, key_file  the policy and key files are not readable by others
                    (warn otherwise)
  state_dir         state_dir can be written
  repository        each repository opens with its credentials, and a lock
                    can be written and released there (the write every
                    backup makes first)
PostgreSQL assets:
  server            the dsn reaches the server
  archiving         archive_mode is on, archive_command runs lifeboat
                    wal-push for this asset with this policy, and the
                    archiver is not failing
  pgdata            pgdata is the server's data_directory
  clock             the server's clock is within 5s of this host's (warn;
                    FAIL beyond 60s)
  pg_wal_space      at least 1 GiB and 10% free where pg_wal is (warn)
  archive_user      the owner of pgdata, whom archive_command and
                    restore_command run as, can read the policy and keys
  wal_round_trip    a segment switched out on the server reaches the primary
                    repository within --wait and is fetched back intact;
                    copies that lack it yet are a warning

The round trip writes one transaction and switches the WAL segment, like
pg_switch_wal() by hand; nothing else is changed. lifeboat check runs the
archiving probe too.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, assets, err := g.assetsService(optionalArg(args))
			if err != nil {
				return err
			}
			probes, err := svc.Doctor(cmd.Context(), assets, app.DoctorOptions{Wait: wait})
			if err != nil {
				return err
			}
			if asJSON {
				if err := g.printJSON(probes); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				for _, pr := range probes {
					what := pr.Name
					switch {
					case pr.Asset != "" && pr.Repository != "":
						what += " " + pr.Asset + "@" + pr.Repository
					case pr.Asset != "":
						what += " " + pr.Asset
					case pr.Repository != "":
						what += " " + pr.Repository
					}
					line := pr.Message
					if pr.Fix != "" {
						line += "; fix: " + pr.Fix
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", pr.Status, what, line)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if n := app.DoctorFailed(probes); n > 0 {
				return errors.New(plural(n, "probe") + " failed")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&wait, "wait", 60*time.Second, "how long the WAL round trip waits for its segment")
	return cmd
}
