package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
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
	p, err := g.policy()
	if err != nil {
		return err
	}
	problems := 0
	for i := range p.Repositories {
		rp := &p.Repositories[i]
		r, err := g.openRepository(ctx, rp)
		if err != nil {
			return err
		}
		started := time.Now()
		rep, err := r.Verify(ctx, repo.VerifyOptions{ReadData: o.readData})
		if err != nil {
			return fmt.Errorf("verify %s: %w", rp.Name, err)
		}
		var found []string
		for _, pr := range rep.Problems {
			fmt.Fprintf(g.stdout, "repository %s: %s\n", rp.Name, pr)
			found = append(found, fmt.Sprint(pr))
		}
		problems += len(rep.Problems)
		wal := 0
		for j := range p.Assets {
			a := &p.Assets[j]
			if a.Kind != lifeboat.KindPostgres || !usesRepository(a.Repositories, rp.Name) {
				continue
			}
			wr, err := postgres.VerifyWAL(ctx, r, a.Name, o.readData)
			if err != nil {
				return fmt.Errorf("verify %s: %w", rp.Name, err)
			}
			for _, pr := range wr.Problems {
				fmt.Fprintf(g.stdout, "repository %s: %s\n", rp.Name, pr)
				found = append(found, fmt.Sprint(pr))
			}
			problems += len(wr.Problems)
			wal += wr.Files
		}
		if err := recordVerify(ctx, p, rp.Name, started, found, rep.Snapshots+rep.Packs+wal); err != nil {
			fmt.Fprintf(g.stderr, "lifeboat: warning: %v\n", err)
		}
		how := "presence checked"
		if o.readData {
			how = fmt.Sprintf("%s read and checked", humanBytes(rep.BytesRead))
		}
		fmt.Fprintf(g.stdout, "repository %s: %d snapshots, %d packs, %d WAL files, %s, %d problems\n",
			rp.Name, rep.Snapshots, rep.Packs, wal, how, len(rep.Problems))
		if len(rep.Unreferenced) > 0 {
			fmt.Fprintf(g.stdout, "repository %s: %d packs not in any index (left by interrupted backups; harmless)\n", rp.Name, len(rep.Unreferenced))
		}
	}
	if problems > 0 {
		return errors.New(plural(problems, "problem") + " found")
	}
	return nil
}

func usesRepository(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// recordVerify keeps the outcome in the catalog, where check and the
// report find it. Failing to record it does not change what verify found,
// so the caller only warns.
func recordVerify(ctx context.Context, p *policy.Policy, repository string, started time.Time, found []string, objects int) error {
	c, err := catalog.Open(ctx, catalog.Path(p.StateDir))
	if err != nil {
		return fmt.Errorf("record the verify of %s: %w", repository, err)
	}
	defer c.Close()
	v := catalog.Verify{Repository: repository, Start: started, End: time.Now(), OK: len(found) == 0, Objects: int64(objects)}
	if len(found) > 0 {
		v.Error = found[0]
		if len(found) > 1 {
			v.Error += fmt.Sprintf(" (and %d more)", len(found)-1)
		}
	}
	return c.RecordVerify(ctx, v)
}
