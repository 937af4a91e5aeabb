package main

import (
	"context"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/spf13/cobra"
)

type exportOptions struct {
	snapshot   string
	out        string
	database   string
	globals    bool
	repository string
}

func newExportCommand(g *globalOptions) *cobra.Command {
	var o exportOptions
	cmd := &cobra.Command{
		Use:   "export SNAPSHOT --out FILE [--database NAME | --globals]",
		Short: "Write a logical dump out as the plain pg_dump archive",
		Long: `Write the archive of one database of a pg_dump snapshot to FILE, byte for
byte as pg_dump wrote it (custom format): stock pg_restore reads it with no
Lifeboat installed, on any provider:

    pg_restore --dbname "host=... dbname=newdb" FILE

--globals writes the roles and tablespaces (pg_dumpall --globals-only) as
SQL instead. FILE must not exist; it appears only once it is whole and
synced to disk.`,
		Args: exactArgs(1, "SNAPSHOT (an id or a unique prefix)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.snapshot = args[0]
			return runExport(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.out, "out", "", "the file to write (must not exist)")
	f.StringVar(&o.database, "database", "", "the dumped database to export, when the snapshot holds several")
	f.BoolVar(&o.globals, "globals", false, "export the globals (roles, tablespaces) as SQL instead of a database")
	f.StringVar(&o.repository, "repository", "", "read from this repository (default: the first of the policy that holds the snapshot)")
	return cmd
}

func runExport(ctx context.Context, g *globalOptions, o exportOptions) error {
	if o.out == "" {
		return usagef("export needs --out FILE")
	}
	if len(o.snapshot) < 4 {
		return usagef("export: snapshot id %q: give at least 4 hex digits", o.snapshot)
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	line, err := svc.Export(ctx, o.repository, o.snapshot, asset.ExportOptions{Out: o.out, Database: o.database, Globals: o.globals})
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, line)
	return nil
}
