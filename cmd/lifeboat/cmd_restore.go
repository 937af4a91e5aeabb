package main

import (
	"context"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type restoreOptions struct {
	asset      string
	to         string
	snapshot   string
	workers    int
	owner      string
	repository string
	asOf       string
	production bool
	approval   string
	// kind holds the restore flags of every kind, by name; the asset's
	// kind refuses those it does not take.
	kind asset.FlagValues
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore ASSET --to DIR [--time T | --lsn L | --xid X | --name N]",
		Short: "Restore an asset, to a point in time or to the latest state",
		Long: `Restore an asset. A PostgreSQL asset is restored into the data directory DIR.
Without a target it recovers to the end of the archived WAL. Lifeboat picks
the newest snapshot that is consistent before the target (or the one given
with --snapshot), writes the data directory, backup_label and the recovery
settings; then start the server:

    pg_ctl -D DIR start

and PostgreSQL replays archived WAL up to the target, then promotes.
A time needs a zone: "2026-11-23 03:00:00+08", "2026-11-22T19:00:00Z".

Some tables of a PostgreSQL or pg_dump asset, as they were at a time:

    lifeboat restore ASSET [--time T] --table schema.table [--schema S] --out FILE

restores into a throwaway server and writes only those tables and schemas to
FILE in pg_dump's custom format (docs/postgres.md, docs/pgdump.md).
--database DB with --to DIR restores one database of a PostgreSQL cluster.

Other kinds restore their newest snapshot (or --snapshot): see docs/ for the
flags each kind takes; a flag of another kind is refused.

--repository-as-of T reads the repository as it was at T: on a versioned S3
bucket, every object as its newest version stored at or before T, and only the
objects that existed then (one deleted or overwritten since is read as it was;
one stored since is not there): a restore from before an attack on the
repository. A store without versions refuses it. See docs/storage.md.`,
		Args: exactArgs(1, "ASSET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = args[0]
			o.kind = kindFlagValues(cmd.Flags())
			return runRestore(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "where to restore: a data directory (empty or absent, unless --delta), a file, a directory or a URL, by kind")
	f.StringVar(&o.snapshot, "snapshot", "", "restore from this snapshot (id or prefix) instead of the newest fitting one")
	f.IntVar(&o.workers, "workers", 0, "parallel writers (default: all cores)")
	f.StringVar(&o.owner, "owner", "", "OS user to own the restored files (default: the recorded owners)")
	f.StringVar(&o.repository, "repository", "", "restore from this repository of the asset (a copy) instead of the primary")
	f.StringVar(&o.asOf, "repository-as-of", "", "read the repository as it was at this time (a versioned S3 bucket)")
	f.BoolVar(&o.production, "production", false, "this restore replaces production (needs approval when the policy protects restore_production)")
	addApprovalFlag(f, &o.approval)
	for _, kf := range app.Kinds().RestoreFlags() {
		switch kf.Type {
		case asset.FlagBool:
			f.Bool(kf.Name, false, kf.Usage)
		case asset.FlagStrings:
			f.StringArray(kf.Name, nil, kf.Usage)
		default:
			f.String(kf.Name, "", kf.Usage)
		}
	}
	return cmd
}

// kindFlagValues are the kind-specific restore flags given on the command
// line.
func kindFlagValues(fs *pflag.FlagSet) asset.FlagValues {
	v := asset.FlagValues{}
	for _, kf := range app.Kinds().RestoreFlags() {
		if !fs.Changed(kf.Name) {
			continue
		}
		switch kf.Type {
		case asset.FlagBool:
			v[kf.Name], _ = fs.GetBool(kf.Name)
		case asset.FlagStrings:
			v[kf.Name], _ = fs.GetStringArray(kf.Name)
		default:
			v[kf.Name], _ = fs.GetString(kf.Name)
		}
	}
	return v
}

func runRestore(ctx context.Context, g *globalOptions, o restoreOptions) error {
	svc, err := g.service()
	if err != nil {
		return err
	}
	req := app.RestoreRequest{Asset: o.asset, Repository: o.repository, Snapshot: o.snapshot, Workers: o.workers,
		UID: -1, GID: -1, Flags: o.kind, SelfCommand: g.selfCommand, Production: o.production}
	if o.to != "" {
		req.To = o.to
		if !strings.Contains(o.to, "://") {
			if req.To, err = filepath.Abs(o.to); err != nil {
				return err
			}
		}
	}
	if o.asOf != "" {
		if req.AsOf, err = asset.ParseTime(o.asOf); err != nil {
			return usagef("--repository-as-of %q: want a time with a zone, like 2026-11-23 03:00:00+08 or 2026-11-22T19:00:00Z", o.asOf)
		}
	}
	if o.owner != "" {
		u, err := user.Lookup(o.owner)
		if err != nil {
			return usagef("--owner: %v", err)
		}
		req.UID, _ = strconv.Atoi(u.Uid)
		req.GID, _ = strconv.Atoi(u.Gid)
	}
	bar := newProgressLine(g)
	defer bar.done()
	req.Progress = bar.set
	res, err := svc.Restore(app.WithApproval(ctx, o.approval), req)
	bar.done()
	if res != nil {
		for _, line := range res.Lines {
			fmt.Fprintln(g.stdout, line)
		}
	}
	return err
}
