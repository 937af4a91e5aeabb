package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/alert"
	"github.com/lifeboat-dr/lifeboat/internal/catalog"
	"github.com/lifeboat-dr/lifeboat/internal/health"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
)

type checkOptions struct {
	json  bool
	alert bool
}

func newCheckCommand(g *globalOptions) *cobra.Command {
	var o checkOptions
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check that every asset is protected as the policy says",
		Long: `Check every asset of the policy and exit 1 when anything fails:

  backup      a backup started at or after the newest scheduled slot that is
              more than check.grace (default 1h) old: one missed run fails
  wal_lag     PostgreSQL assets: WAL archived within the tier's RPO, and the
              archiver not failing (asked of the server when it can be
              reached; otherwise the age of the newest archived WAL)
  copy        every copy repository holds the snapshots older than the grace
              and the WAL older than the RPO
  drill       with a drill schedule: a passing drill since the newest drill
              slot more than the grace old
  verify      the last lifeboat verify of each repository was clean
  repository  every repository can be read

With --alert the problems found are also sent to the policy's alerts (and
resolved when they clear), as lifeboat serve does every check.interval.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON")
	cmd.Flags().BoolVar(&o.alert, "alert", false, "send the problems to the policy's alerts")
	return cmd
}

func runCheck(ctx context.Context, g *globalOptions, o checkOptions) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	results, err := g.evaluateHealth(ctx, p, time.Now(), repoCache{})
	if err != nil {
		return err
	}
	if o.alert {
		if err := sendAlerts(ctx, g, p, results); err != nil {
			return err
		}
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ASSET\tCHECK\tSTATUS\tDETAIL")
		for _, r := range results {
			status := "ok"
			if !r.OK {
				status = "FAIL"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", orDash(r.Asset), checkName(r), status, r.Message)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if n := failing(results); n > 0 {
		return errors.New(plural(n, "check") + " failed")
	}
	return nil
}

func checkName(r health.Result) string {
	if r.Subject != "" {
		return r.Check + " " + r.Subject
	}
	return r.Check
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func failing(rs []health.Result) int {
	n := 0
	for _, r := range rs {
		if !r.OK {
			n++
		}
	}
	return n
}

// evaluateHealth gathers the facts health judges: every repository's
// snapshots and WAL, each copy's lag, the servers' archivers, and the
// drills and verifies recorded in the catalog.
func (g *globalOptions) evaluateHealth(ctx context.Context, p *policy.Policy, now time.Time, cache repoCache) ([]health.Result, error) {
	var assets []*policy.Asset
	for i := range p.Assets {
		assets = append(assets, &p.Assets[i])
	}
	rows, _, err := g.gatherStatus(ctx, p, assets, now, cache)
	if err != nil {
		return nil, err
	}
	f := health.Facts{Now: now, Assets: map[string]*health.AssetFacts{}, Verifies: map[string]health.Verify{},
		Unreadable: map[string]string{}}
	for _, row := range rows {
		af := f.Assets[row.Asset]
		if af == nil {
			af = &health.AssetFacts{}
			f.Assets[row.Asset] = af
		}
		readable := row.Error == ""
		if !readable {
			f.Unreadable[row.Repository] = row.Error
		}
		if row.Role == "primary" {
			af.PrimaryRead = readable
			af.NewestBackup = row.LastSnapshotStart
			a, _ := p.Asset(row.Asset)
			if a != nil && a.Kind == lifeboat.KindPostgres && readable {
				af.WAL = archiveFacts(ctx, a, row, now)
			}
			continue
		}
		cf := health.CopyFacts{Repository: row.Repository, Read: readable}
		if l := row.Lag; l != nil {
			cf.MissingSnapshots, cf.OldestMissing = l.Snapshots, l.OldestMissingSnapshot
			cf.WALFiles, cf.WALSeconds = l.WALFiles, l.WALSeconds
		}
		af.Copies = append(af.Copies, cf)
	}
	// The catalog is read, never created, here: a host where nothing was
	// recorded simply has no drills and no verifies.
	path := catalog.Path(p.StateDir)
	if _, err := os.Stat(path); err == nil {
		c, err := catalog.Open(ctx, path)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		vs, err := c.LastVerify(ctx)
		if err != nil {
			return nil, err
		}
		for name, v := range vs {
			f.Verifies[name] = health.Verify{At: v.End, OK: v.OK, Error: v.Error}
		}
		for _, a := range assets {
			ds, err := c.Drills(ctx, catalog.DrillFilter{Asset: a.Name, Limit: 100})
			if err != nil {
				return nil, err
			}
			if af := f.Assets[a.Name]; af != nil {
				af.Drills = ds
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return health.Evaluate(p, f), nil
}

// archiveFacts measures how far archiving lags for a PostgreSQL asset.
// From the server: every complete segment before the one being written
// must be in the repository, and the archiver must not be failing. When
// the server cannot be reached, the age of the newest archived WAL is all
// there is.
func archiveFacts(ctx context.Context, a *policy.Asset, row statusRow, now time.Time) *health.WALFacts {
	age := 0.0
	if !row.NewestWALTime.IsZero() {
		age = max(0, now.Sub(row.NewestWALTime).Seconds())
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, a.DSN)
	if err != nil {
		return &health.WALFacts{LagSeconds: age, Detail: "server unreachable, age of the newest archived WAL: " + oneLine(err)}
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(cctx, "select pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return &health.WALFacts{LagSeconds: age, Detail: "age of the newest archived WAL: " + oneLine(err)}
	}
	if inRecovery {
		return &health.WALFacts{LagSeconds: age, Detail: "the server is a standby; age of the newest archived WAL"}
	}
	var current string
	var segSize int64
	var lastArchived, lastFailed *time.Time
	var failedWAL *string
	err = conn.QueryRow(cctx, `select pg_walfile_name(pg_current_wal_lsn()),
		(select setting::bigint from pg_settings where name = 'wal_segment_size'),
		last_archived_time, last_failed_time, last_failed_wal from pg_stat_archiver`).Scan(&current, &segSize, &lastArchived, &lastFailed, &failedWAL)
	if err != nil {
		return &health.WALFacts{LagSeconds: age, Detail: "age of the newest archived WAL: " + oneLine(err)}
	}
	w := &health.WALFacts{}
	if lastFailed != nil && (lastArchived == nil || lastFailed.After(*lastArchived)) {
		name := ""
		if failedWAL != nil {
			name = *failedWAL + " "
		}
		w.Failing = fmt.Sprintf("the last attempt, %sat %s, failed (see the server log)", name, lastFailed.UTC().Format(time.RFC3339))
	}
	cur, err1 := postgres.ParseWALFileName(current, uint64(segSize))
	newest, err2 := postgres.ParseWALFileName(row.NewestWAL, uint64(segSize))
	switch {
	case err1 != nil:
		w.LagSeconds, w.Detail = age, "age of the newest archived WAL"
	case row.NewestWAL == "" || err2 != nil:
		w.Detail = "nothing archived; the server writes " + current
		if w.Failing == "" {
			w.Failing = "no WAL of this asset is archived: is archive_command set to lifeboat wal-push?"
		}
	case cur.TLI == newest.TLI && cur.SegNo <= newest.SegNo+1:
		w.Detail = "every complete segment is archived; the server writes " + current
	default:
		w.LagSeconds = age
		w.Detail = fmt.Sprintf("the server writes %s, the newest archived is %s", current, row.NewestWAL)
	}
	return w
}

// alertStateFile is where the alert state lives in the state directory.
const alertStateFile = "alerts.json"

// problems turns the failing results into alert problems.
func problems(rs []health.Result) []alert.Problem {
	var out []alert.Problem
	for _, r := range rs {
		if !r.OK {
			out = append(out, alert.Problem{Asset: r.Asset, Check: r.Check, Subject: r.Subject, Summary: r.Message})
		}
	}
	return out
}

// sendAlerts hands the check's problems to the policy's alerts, which
// fire, repeat and resolve them against the state kept in state_dir.
func sendAlerts(ctx context.Context, g *globalOptions, p *policy.Policy, rs []health.Result) error {
	if len(p.Alerts) == 0 {
		return usagef("--alert: the policy has no alerts")
	}
	// One sender of alerts per state directory: the alert state is not
	// shared, and lifeboat serve, when it runs, sends them itself.
	unlock, err := lockStateDir(p.StateDir)
	if err != nil {
		return fmt.Errorf("--alert: %w (lifeboat serve sends the alerts while it runs)", err)
	}
	defer unlock()
	n, err := alert.New(p.Alerts, filepath.Join(p.StateDir, alertStateFile), alert.Options{Log: g.log})
	if err != nil {
		return err
	}
	return n.Update(ctx, problems(rs))
}
