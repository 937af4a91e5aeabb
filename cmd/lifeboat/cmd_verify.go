package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/spf13/cobra"
)

type verifyOptions struct {
	readData bool
}

func newVerifyCommand(g *globalOptions) *cobra.Command {
	var o verifyOptions
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check that every snapshot and the archived WAL are whole",
		Long: `Check every repository of the policy: every block and tree of every snapshot
is indexed and its pack present, every asset's WAL is continuous on each
timeline and covers each snapshot. With --read-data every pack and WAL file is
read, decrypted and hashed. Each damaged thing is named; the exit status is 1
if anything is wrong.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.readData, "read-data", false, "read and check all stored data, not only its presence")
	return cmd
}

func runVerify(ctx context.Context, g *globalOptions, o verifyOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	problems := 0
	for i := range svc.Policy.Repositories {
		rp := &svc.Policy.Repositories[i]
		v, err := svc.Verify(ctx, rp, o.readData)
		if err != nil {
			return err
		}
		for _, pr := range v.Problems {
			fmt.Fprintf(g.stdout, "repository %s: %s\n", rp.Name, pr)
		}
		problems += len(v.Problems)
		if v.NotRecorded != nil {
			fmt.Fprintf(g.stderr, "lifeboat: warning: %v\n", v.NotRecorded)
		}
		rep := v.Report
		how := "presence checked"
		if o.readData {
			how = fmt.Sprintf("%s read and checked", humanBytes(rep.BytesRead))
		}
		fmt.Fprintf(g.stdout, "repository %s: %d snapshots, %d packs, %d WAL files, %s, %d problems\n",
			rp.Name, rep.Snapshots, rep.Packs, v.WALFiles, how, len(rep.Problems))
		if len(rep.Unreferenced) > 0 {
			fmt.Fprintf(g.stdout, "repository %s: %d packs not in any index (left by interrupted backups; harmless)\n", rp.Name, len(rep.Unreferenced))
		}
	}
	if problems > 0 {
		return errors.New(plural(problems, "problem") + " found")
	}
	return nil
}

func plural(n int, word string) string { return asset.Plural(n, word) }
