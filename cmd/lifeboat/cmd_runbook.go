package main

import (
	"bytes"
	"context"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/report"
)

type runbookOptions struct {
	format    string
	out       string
	restoreTo string
}

func newRunbookCommand(g *globalOptions) *cobra.Command {
	var o runbookOptions
	cmd := &cobra.Command{
		Use:   "runbook [--format md|html|json] [--out FILE] [--restore-to DIR]",
		Short: "Write the recovery runbook: per tier and asset, where the backups are and the exact commands",
		Long: `Write the recovery runbook, generated from the policy, the repositories and the
drills on record: tier by tier in recovery order (tightest RTO first), and for
each asset where its backups are (every repository and its location), the
commands that restore it to the newest point and to an earlier one (from the
primary and from each copy), the commands that bring it up and check it, the
RTO forecast from the restore throughput its drills measured against its
current size, and its last drill's result. See docs/runbook.md.

Every restore line writes under --restore-to (default ` + app.RunbookRoot + `),
never over the production copy. lifeboat serve keeps the runbook current at
the policy's runbook.path after every drill and policy reload.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runRunbook(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "md", "md, html or json")
	f.StringVar(&o.out, "out", "", "write the runbook to this file (replaced atomically) instead of standard output")
	f.StringVar(&o.restoreTo, "restore-to", "", "the scratch directory the restore lines write under (default "+app.RunbookRoot+")")
	return cmd
}

func runRunbook(ctx context.Context, g *globalOptions, o runbookOptions) error {
	switch o.format {
	case "md", "html", "json":
	default:
		return usagef("--format %q: use md, html or json", o.format)
	}
	root := o.restoreTo
	if root != "" {
		var err error
		if root, err = filepath.Abs(root); err != nil {
			return usagef("--restore-to %q: %v", o.restoreTo, err)
		}
	}
	svc, err := g.service()
	if err != nil {
		return err
	}
	in, err := svc.RunbookInput(ctx, svc.Now(), root)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := report.RenderRunbook(&buf, o.format, in); err != nil {
		return err
	}
	if o.out == "" {
		_, err := g.stdout.Write(buf.Bytes())
		return err
	}
	return replaceFile(o.out, buf.Bytes())
}
