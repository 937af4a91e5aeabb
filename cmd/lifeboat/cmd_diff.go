package main

import (
	"context"

	"github.com/spf13/cobra"
)

type diffOptions struct {
	asset      string
	from, to   string
	json       bool
	repository string
}

func newDiffCommand(g *globalOptions) *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff [ASSET] SNAPSHOT_A SNAPSHOT_B",
		Short: "Show what changed between two snapshots of a files or bucket asset",
		Long: `List what was added, removed and changed from SNAPSHOT_A to SNAPSHOT_B (ids
or unique prefixes of two snapshots of one asset; with ASSET, both must be
its snapshots).

For a files asset: content, mode, owner, symlink target or type; for text
files up to 256 KiB (UTF-8, no NUL byte) the change is shown as a unified
line diff. A new modification time alone is not a change.

    + /etc/drop/conf.d/new.conf
    - /etc/drop/old.conf
    M /etc/drop/app.conf (content)
    M /etc/drop/run.sh (mode 0644 -> 0755)

For a bucket asset: the keys added, removed and changed (content, metadata
or tags).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 && len(args) != 3 {
				return usagef("diff takes SNAPSHOT_A SNAPSHOT_B, or ASSET SNAPSHOT_A SNAPSHOT_B (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 3 {
				o.asset, args = args[0], args[1:]
			}
			o.from, o.to = args[0], args[1]
			return runDiff(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().StringVar(&o.repository, "repository", "", "read this repository (default: the first of the policy that holds SNAPSHOT_A)")
	return cmd
}

func runDiff(ctx context.Context, g *globalOptions, o diffOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	res, from, to, err := svc.Diff(ctx, o.asset, o.repository, o.from, o.to)
	if err != nil {
		return err
	}
	if o.json {
		return g.printJSON(res)
	}
	res.WriteText(g.stdout, from, to)
	return nil
}
