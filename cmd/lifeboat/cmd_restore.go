package main

import (
	"context"
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
)

type restoreOptions struct {
	asset       string
	to          string
	time        string
	lsn         string
	xid         string
	name        string
	snapshot    string
	delta       bool
	workers     int
	tablespaces []string
	archiveOff  bool
	owner       string
	repository  string
	toDSN       string // pg_dump assets: restore into this database through pg_restore
	database    string // pg_dump assets: which dumped database to restore
	globals     bool   // pg_dump assets: restore roles and tablespaces first
	noOwner     bool   // pg_dump assets: pg_restore --no-owner
	path        string // files assets: restore only this path of the tree
}

func newRestoreCommand(g *globalOptions) *cobra.Command {
	var o restoreOptions
	cmd := &cobra.Command{
		Use:   "restore ASSET --to DIR [--time T | --lsn L | --xid X | --name N]",
		Short: "Restore an asset, to a point in time or to the latest state",
		Long: `Restore a PostgreSQL asset into DIR. Without a target it recovers to the end
of the archived WAL. Lifeboat picks the newest snapshot that is consistent
before the target (or the one given with --snapshot), writes the data
directory, backup_label and the recovery settings; then start the server:

    pg_ctl -D DIR start

and PostgreSQL replays archived WAL up to the target, then promotes.
A time needs a zone: "2026-11-23 03:00:00+08", "2026-11-22T19:00:00Z".`,
		Args: exactArgs(1, "ASSET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.asset = args[0]
			return runRestore(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.to, "to", "", "data directory to restore into (empty or absent, unless --delta)")
	f.StringVar(&o.time, "time", "", "recover to this time (with a zone)")
	f.StringVar(&o.lsn, "lsn", "", "recover to this WAL position (e.g. 0/3000060)")
	f.StringVar(&o.xid, "xid", "", "recover to the commit of this transaction")
	f.StringVar(&o.name, "name", "", "recover to this named restore point")
	f.StringVar(&o.snapshot, "snapshot", "", "restore from this snapshot (id or prefix) instead of the newest fitting one")
	f.BoolVar(&o.delta, "delta", false, "restore into an existing data directory, rewriting only what differs")
	f.IntVar(&o.workers, "workers", 0, "parallel writers (default: all cores)")
	f.StringArrayVar(&o.tablespaces, "tablespace", nil, "restore a tablespace elsewhere: NAME_OR_OID=DIR (repeatable)")
	f.BoolVar(&o.archiveOff, "archive-off", false, "turn WAL archiving off in the restored cluster (for copies that must not archive into this asset)")
	f.StringVar(&o.owner, "owner", "", "OS user to own the restored files (default: the recorded owners)")
	f.StringVar(&o.repository, "repository", "", "restore from this repository of the asset (a copy) instead of the primary")
	f.StringVar(&o.toDSN, "to-dsn", "", "pg_dump assets: restore into this database (libpq connection string) with pg_restore")
	f.StringVar(&o.path, "path", "", "files assets: restore only this file or directory (a path as backed up); git assets: only NAME.git")
	f.StringVar(&o.database, "database", "", "pg_dump assets: the dumped database to restore, when the snapshot holds several")
	f.BoolVar(&o.globals, "globals", false, "pg_dump assets: restore roles and tablespaces (pg_dumpall --globals-only) first")
	f.BoolVar(&o.noOwner, "no-owner", false, "pg_dump assets: leave objects owned by the restoring role (pg_restore --no-owner)")
	return cmd
}

// parseTarget turns the target flags into a recovery target; at most one
// may be given.
func parseTarget(o restoreOptions) (postgres.Target, error) {
	var t postgres.Target
	n := 0
	if o.time != "" {
		n++
		tm, err := parseTime(o.time)
		if err != nil {
			return t, err
		}
		t.Time = &tm
	}
	if o.lsn != "" {
		n++
		l, err := lifeboat.ParseLSN(o.lsn)
		if err != nil {
			return t, usagef("--lsn: %v", err)
		}
		t.LSN = &l
	}
	if o.xid != "" {
		n++
		x, err := strconv.ParseUint(o.xid, 10, 64)
		if err != nil || x < 3 {
			return t, usagef("--xid %q: want a transaction id (a number from 3)", o.xid)
		}
		t.XID = &x
	}
	if o.name != "" {
		n++
		t.Name = o.name
	}
	if n > 1 {
		return t, usagef("give at most one of --time, --lsn, --xid and --name")
	}
	return t, nil
}

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if strings.HasSuffix(l, "MST") && t.Location() != time.UTC && t.Location().String() != "UTC" {
				// Go accepts unknown zone abbreviations with offset zero;
				// only UTC is unambiguous.
				continue
			}
			return t, nil
		}
	}
	return time.Time{}, usagef("--time %q: want a time with a zone, like 2026-11-23 03:00:00+08 or 2026-11-22T19:00:00Z", s)
}

func runRestore(ctx context.Context, g *globalOptions, o restoreOptions) error {
	p, a, err := g.asset(o.asset)
	if err != nil {
		return err
	}
	if a.Kind != lifeboat.KindPostgres {
		restore := kindRestores[a.Kind]
		if restore == nil {
			return usagef("asset %s: restore of kind %s is not supported yet", a.Name, a.Kind)
		}
		r, err := g.assetRepository(ctx, p, a, o.repository)
		if err != nil {
			return err
		}
		s, err := pickSnapshot(ctx, r, a.Name, o.snapshot)
		if err != nil {
			return fmt.Errorf("restore %s: %w", a.Name, err)
		}
		if err := restore(ctx, g, a, r, s, o); err != nil {
			return fmt.Errorf("restore %s: %w", a.Name, err)
		}
		return nil
	}
	if o.to == "" {
		return usagef("restore needs --to DIR")
	}
	target, err := parseTarget(o)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(o.to)
	if err != nil {
		return err
	}
	ts := map[string]string{}
	for _, m := range o.tablespaces {
		k, v, ok := strings.Cut(m, "=")
		if !ok || k == "" || !filepath.IsAbs(v) {
			return usagef("--tablespace %q: want NAME_OR_OID=/absolute/dir", m)
		}
		ts[k] = v
	}
	uid, gid := -1, -1
	if o.owner != "" {
		u, err := user.Lookup(o.owner)
		if err != nil {
			return usagef("--owner: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	fetch := []string{"wal-fetch", a.Name, "%f", "%p"}
	if o.repository != "" {
		fetch = []string{"wal-fetch", "--repository", o.repository, a.Name, "%f", "%p"}
	}
	restoreCmd, err := g.selfCommand(fetch...)
	if err != nil {
		return err
	}
	r, err := g.assetRepository(ctx, p, a, o.repository)
	if err != nil {
		return err
	}
	bar := newProgressLine(g)
	defer bar.done()
	start := time.Now()
	res, err := postgres.Restore(ctx, r, postgres.RestoreOptions{
		Asset: a.Name, Dir: dir, Target: target, Snapshot: o.snapshot, Delta: o.delta, Workers: o.workers,
		RestoreCommand: restoreCmd, Tablespaces: ts, ArchiveOff: o.archiveOff, UID: uid, GID: gid, Log: g.log,
		Progress: func(w, total int64) {
			bar.set(fmt.Sprintf("restore %s: %s of %s written", a.Name, humanBytes(w), humanBytes(total)))
		},
	})
	bar.done()
	if err != nil {
		return fmt.Errorf("restore %s: %w", a.Name, err)
	}
	fmt.Fprintf(g.stdout, "restored snapshot %s of %s to %s: %d files, %s written in %s\n",
		res.Snapshot.ID.Short(), a.Name, dir, res.Stats.Files, humanBytes(res.Stats.BytesWritten), time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(g.stdout, "recovery target: %s (consistent from LSN %s, %s)\n", target, res.Info.StopLSN, res.Info.StopTime.Format(time.RFC3339))
	fmt.Fprintf(g.stdout, "start it with: pg_ctl -D %s start\n", dir)
	return nil
}
