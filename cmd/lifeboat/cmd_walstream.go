package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

func newWALStreamCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "wal-stream ASSET",
		Short: "Stream an asset's WAL into its repository in the foreground",
		Long: `Stream a postgres asset's WAL into its repository over a replication slot
(lifeboat_<asset>), as lifeboat serve does for every asset with
wal: {stream: true}: completed segments exactly as wal-push stores them, and
the segment in progress as a partial refreshed every flush_interval. Runs
until interrupted; reconnects after a restart or a network cut and resumes
from the slot. See docs/postgres.md, "Streaming WAL".`,
		Args: exactArgs(1, "ASSET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := g.service()
			if err != nil {
				return err
			}
			err = svc.Stream(cmd.Context(), args[0])
			if errors.Is(err, context.Canceled) {
				return nil // interrupted: what was received is stored
			}
			return err
		},
	}
}
