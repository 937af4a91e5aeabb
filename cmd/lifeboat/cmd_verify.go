package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

type verifyOptions struct {
	readData   bool
	repair     bool
	repository string
	asJSON     bool
}

// verifyJSON is one repository's outcome as --json prints it.
type verifyJSON struct {
	Repository  string               `json:"repository"`
	Snapshots   int                  `json:"snapshots"`
	Packs       int                  `json:"packs"`
	WALFiles    int                  `json:"wal_files"`
	ReadData    bool                 `json:"read_data"`
	BytesRead   int64                `json:"bytes_read"`
	Problems    []string             `json:"problems"`
	Leftovers   []storage.ObjectInfo `json:"leftovers"`
	NotRecorded string               `json:"not_recorded,omitempty"`
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
if anything is wrong. Key objects that would be skipped when opening the
repository are problems too. What interrupted writes left (packs in no index,
temporary files) is listed with its size, but is no problem: expire removes it.

On a versioned S3 bucket every object whose current version is not authentic
(overwritten in place by a credential that may put) is named, with the earlier
version that is authentic, if any. --repair first makes each such version the
current one again (a copy of it over the name; no version is deleted) and says
what it did, then verifies. It needs a credential that may read versions and
put over a name: the expire role of docs/storage.md.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.readData, "read-data", false, "read and check all stored data, not only its presence")
	cmd.Flags().BoolVar(&o.repair, "repair", false, "make the authentic earlier version of every overwritten object current again, then verify")
	cmd.Flags().StringVar(&o.repository, "repository", "", "verify this repository only")
	cmd.Flags().BoolVar(&o.asJSON, "json", false, "print JSON, one object per repository")
	return cmd
}

func runVerify(ctx context.Context, g *globalOptions, o verifyOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	repos, err := app.NamedOrAllRepositories(svc.Policy, o.repository)
	if err != nil {
		return err
	}
	out := g.stdout
	var results []verifyJSON
	if o.asJSON {
		out = io.Discard // the lines are for people; the JSON says it all
	}
	problems := 0
	for _, rp := range repos {
		if o.repair {
			w := out
			if o.asJSON {
				w = g.stderr // what was repaired still reaches the operator
			}
			if err := runRepair(ctx, w, svc, rp); err != nil {
				return err
			}
		}
		v, err := svc.Verify(ctx, rp, o.readData)
		if err != nil {
			return err
		}
		for _, pr := range v.Problems {
			fmt.Fprintf(out, "repository %s: %s\n", rp.Name, pr)
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
		// The count is of everything printed above, the archives' problems
		// included, so that it adds up to the total below.
		fmt.Fprintf(out, "repository %s: %d snapshots, %d packs, %d WAL files, %s, %d problems\n",
			rp.Name, rep.Snapshots, rep.Packs, v.WALFiles, how, len(v.Problems))
		printLeftovers(out, rp.Name, "pack", "in no index: left by interrupted backups", rep.Unreferenced)
		printLeftovers(out, rp.Name, "temporary file", "left by writes that were killed", rep.Temporary)
		if rep.VersionsUnchecked != "" && rep.VersionsUnchecked != repo.NoVersions {
			fmt.Fprintf(out, "repository %s: earlier versions not checked: %s\n", rp.Name, rep.VersionsUnchecked)
		}
		res := verifyJSON{Repository: rp.Name, Snapshots: rep.Snapshots, Packs: rep.Packs, WALFiles: v.WALFiles, ReadData: o.readData,
			BytesRead: rep.BytesRead, Problems: append([]string{}, v.Problems...),
			Leftovers: append(append([]storage.ObjectInfo{}, rep.Unreferenced...), rep.Temporary...)}
		if v.NotRecorded != nil {
			res.NotRecorded = v.NotRecorded.Error()
		}
		results = append(results, res)
	}
	if o.asJSON {
		if err := g.printJSON(results); err != nil {
			return err
		}
	}
	if problems > 0 {
		return errors.New(plural(problems, "problem") + " found")
	}
	return nil
}

// maxLeftoversShown bounds the leftovers verify names one by one.
const maxLeftoversShown = 10

// printLeftovers reports what interrupted writes left, with sizes. They
// are not problems: nothing uses them, and expire removes them.
func printLeftovers(w io.Writer, repository, what, why string, items []storage.ObjectInfo) {
	if len(items) == 0 {
		return
	}
	var total int64
	for _, oi := range items {
		total += oi.Size
	}
	fmt.Fprintf(w, "repository %s: %s, %s (%s; harmless: expire removes them once older than its grace period)\n",
		repository, plural(len(items), what), humanBytes(total), why)
	for i, oi := range items {
		if i == maxLeftoversShown {
			fmt.Fprintf(w, "repository %s:   and %d more\n", repository, len(items)-i)
			break
		}
		fmt.Fprintf(w, "repository %s:   %s %s, written %s\n", repository, oi.Name, humanBytes(oi.Size), oi.ModTime.UTC().Format(time.RFC3339))
	}
}

func plural(n int, word string) string { return asset.Plural(n, word) }

// runRepair runs one repository's repair and says what it did. A store
// without versions has nothing to repair.
func runRepair(ctx context.Context, w io.Writer, svc *app.Service, rp *policy.Repository) error {
	repository := rp.Name
	res, err := svc.RepairVersions(ctx, rp)
	if errors.Is(err, repo.ErrNoVersions) {
		fmt.Fprintf(w, "repository %s: nothing to repair: %v\n", repository, err)
		return nil
	}
	if res != nil {
		for _, d := range res.Repaired {
			fmt.Fprintf(w, "repository %s: repaired %s: its authentic version %s, stored %s, is current again\n",
				repository, d.Name, d.Version, lifeboat.FormatTime(d.Stored))
		}
		if len(res.Repaired) == 0 && err == nil {
			fmt.Fprintf(w, "repository %s: nothing to repair\n", repository)
		}
	}
	return err
}
