package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/files"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

type diffOptions struct {
	from, to   string
	json       bool
	repository string
}

func newDiffCommand(g *globalOptions) *cobra.Command {
	var o diffOptions
	cmd := &cobra.Command{
		Use:   "diff SNAPSHOT_A SNAPSHOT_B",
		Short: "Show what changed between two snapshots of a files asset",
		Long: `List the files added, removed and changed from SNAPSHOT_A to SNAPSHOT_B (ids
or unique prefixes of two snapshots of one files asset): content, mode, owner,
symlink target or type. For text files up to 256 KiB (UTF-8, no NUL byte) the
change is shown as a unified line diff. A new modification time alone is not
a change.

    + /etc/drop/conf.d/new.conf
    - /etc/drop/old.conf
    M /etc/drop/app.conf (content)
    M /etc/drop/run.sh (mode 0644 -> 0755)`,
		Args: exactArgs(2, "SNAPSHOT_A SNAPSHOT_B"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.from, o.to = args[0], args[1]
			return runDiff(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().StringVar(&o.repository, "repository", "", "read this repository (default: the first of the policy that holds SNAPSHOT_A)")
	return cmd
}

func runDiff(ctx context.Context, g *globalOptions, o diffOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	r, from, err := g.findInRepositories(ctx, p, o.repository, o.from)
	if err != nil {
		return err
	}
	if from == nil {
		return fmt.Errorf("no repository of the policy holds snapshot %q", o.from)
	}
	to, err := r.FindSnapshot(ctx, o.to)
	if err != nil {
		return err
	}
	for _, s := range []*repo.Snapshot{from, to} {
		if s.Kind != files.Kind {
			return usagef("snapshot %s is of asset %s (kind %s): diff compares snapshots of a files asset", s.ID.Short(), s.Asset, s.Kind)
		}
	}
	if from.Asset != to.Asset {
		return usagef("snapshot %s is of asset %s and %s of asset %s: diff compares two snapshots of one asset",
			from.ID.Short(), from.Asset, to.ID.Short(), to.Asset)
	}
	res, err := files.Diff(ctx, r, from, to, files.DiffOptions{})
	if err != nil {
		return fmt.Errorf("diff %s %s: %w", from.ID.Short(), to.ID.Short(), err)
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printDiff(g.stdout, from, to, res)
	return nil
}

// printDiff writes the list of changes, then the line diffs.
func printDiff(w io.Writer, from, to *repo.Snapshot, res *files.DiffResult) {
	const layout = "2006-01-02 15:04:05"
	fmt.Fprintf(w, "asset %s: snapshot %s (%s) -> %s (%s)\n", res.Asset, from.ID.Short(), from.EndTime.Local().Format(layout),
		to.ID.Short(), to.EndTime.Local().Format(layout))
	for _, n := range []struct {
		id   repo.ID
		info *files.Info
	}{{from.ID, res.FromInfo}, {to.ID, res.ToInfo}} {
		if n.info.ChangedCount > 0 {
			fmt.Fprintf(w, "note: in snapshot %s, %d files kept changing while read and may mix old and new content: %s\n",
				n.id.Short(), n.info.ChangedCount, strings.Join(n.info.Changed, ", "))
		}
	}
	for _, c := range res.Changes {
		e := c.New
		if e == nil {
			e = c.Old
		}
		name := c.Path
		if e.Type == "dir" {
			name += "/"
		}
		var details []string
		switch c.Status {
		case files.Added:
			fmt.Fprintf(w, "+ %s", name)
		case files.Removed:
			fmt.Fprintf(w, "- %s", name)
		default:
			fmt.Fprintf(w, "M %s", name)
			for _, what := range c.What {
				switch what {
				case "type":
					details = append(details, fmt.Sprintf("type %s -> %s", c.Old.Type, c.New.Type))
				case "content":
					details = append(details, fmt.Sprintf("content, %s -> %s", humanBytes(c.Old.Size), humanBytes(c.New.Size)))
				case "mode":
					details = append(details, fmt.Sprintf("mode %s -> %s", c.Old.Mode, c.New.Mode))
				case "owner":
					details = append(details, fmt.Sprintf("owner %d:%d -> %d:%d", c.Old.UID, c.Old.GID, c.New.UID, c.New.GID))
				case "link":
					details = append(details, fmt.Sprintf("link %s -> %s", c.Old.Link, c.New.Link))
				}
			}
		}
		if c.NoDiff != "" {
			details = append(details, "no line diff: "+c.NoDiff)
		}
		if len(details) > 0 {
			fmt.Fprintf(w, " (%s)", strings.Join(details, "; "))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d added, %d removed, %d changed\n", res.Added, res.Removed, res.Changed)
	for _, c := range res.Changes {
		if c.Diff != "" {
			fmt.Fprintf(w, "\n%s", c.Diff)
		}
	}
}
