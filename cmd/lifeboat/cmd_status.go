package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-dr/lifeboat/internal/app"
	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	"github.com/lifeboat-dr/lifeboat/internal/postgres"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [ASSET]",
		Short: "Show each asset's newest backup and WAL, and how far each copy lags",
		Long: `Show, for every asset and each of its repositories, the newest snapshot and
the newest archived WAL segment, and for each copy repository how far it lags
its primary: WAL files and snapshots it lacks, the age of the oldest missing
WAL file, and this host's copy queue (entries, bytes, oldest, last error).

It exits 1 when a repository cannot be read.`,
		Args: atMostOneAsset,
		RunE: func(cmd *cobra.Command, args []string) error {
			asset := optionalArg(args)
			return runStatus(cmd.Context(), g, asset, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// statusRow is one repository of one asset.
type statusRow struct {
	Asset      string `json:"asset"`
	Repository string `json:"repository"`
	Role       string `json:"role"` // primary or copy
	Error      string `json:"error,omitempty"`
	Snapshots  int    `json:"snapshots"`
	// LastSnapshot and LastSnapshotTime name the newest snapshot.
	LastSnapshot     string    `json:"last_snapshot,omitempty"`
	LastSnapshotTime time.Time `json:"last_snapshot_time,omitzero"`
	// LastSnapshotStart is when the newest backup started (by start).
	LastSnapshotStart time.Time `json:"-"`
	NewestWAL         string    `json:"newest_wal,omitempty"`
	NewestWALTime     time.Time `json:"newest_wal_time,omitzero"`
	Lag               *copyLag  `json:"lag,omitempty"`
}

// copyLag is how far a copy is behind its primary.
type copyLag struct {
	WALFiles int   `json:"wal_files"`
	WALBytes int64 `json:"wal_bytes"`
	// WALSeconds is how long ago the oldest WAL file the copy lacks was
	// archived; 0 when it lacks none.
	WALSeconds float64 `json:"wal_seconds"`
	Snapshots  int     `json:"snapshots"`
	// OldestMissingSnapshot is when the oldest snapshot the copy lacks
	// was taken.
	OldestMissingSnapshot time.Time    `json:"oldest_missing_snapshot,omitzero"`
	Queue                 *queueStatus `json:"queue,omitempty"`
}

type queueStatus struct {
	Dir           string    `json:"dir"`
	Entries       int       `json:"entries"`
	Bytes         int64     `json:"bytes"`
	Oldest        time.Time `json:"oldest,omitzero"`
	Damaged       int       `json:"damaged,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorTime time.Time `json:"last_error_time,omitzero"`
}

func runStatus(ctx context.Context, g *globalOptions, asset string, asJSON bool) error {
	p, err := g.policy()
	if err != nil {
		return err
	}
	assets, err := selectAssets(p, asset)
	if err != nil {
		return err
	}
	now := time.Now()
	rows, failed, err := g.gatherStatus(ctx, p, assets, now, repoCache{})
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else if err := printStatus(g, rows, now); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("status: %d repositories could not be read", failed)
	}
	return nil
}

// gatherStatus reads every repository of the assets: the rows of status,
// and how many repositories could not be read. Repositories are opened
// through cache, once each however many assets share them.
func (g *globalOptions) gatherStatus(ctx context.Context, p *policy.Policy, assets []*policy.Asset, now time.Time, cache repoCache) ([]statusRow, int, error) {
	rows := []statusRow{}
	failed := 0
	for _, a := range assets {
		rps, err := p.AssetRepositories(a)
		if err != nil {
			return nil, 0, &usageError{Err: err}
		}
		var primary *repo.Repository
		var primaryIDs map[string]time.Time
		for i, rp := range rps {
			row := statusRow{Asset: a.Name, Repository: rp.Name, Role: "primary"}
			if i > 0 {
				row.Role = "copy"
			}
			r, ids, err := g.repositoryStatus(ctx, a, rp, &row, cache)
			if err != nil {
				row.Error = err.Error()
				failed++
			}
			if i == 0 {
				primary, primaryIDs = r, ids
			} else if err := g.copyStatus(ctx, p, a, rp, primary, primaryIDs, ids, &row, now); err != nil {
				row.Error = strings.TrimPrefix(row.Error+"; "+err.Error(), "; ")
				failed++
			}
			rows = append(rows, row)
		}
	}
	return rows, failed, nil
}

// repoCache holds opened repositories by what opens them. Opening one
// unlocks its key (Argon2id for a passphrase: a tenth of a second of CPU),
// which a check of fifty assets every minute must not repeat for each.
type repoCache map[string]*repo.Repository

func (c repoCache) open(ctx context.Context, g *globalOptions, rp *policy.Repository) (*repo.Repository, error) {
	key := strings.Join([]string{rp.Name, rp.URL, rp.KeyFile, rp.Passphrase.Reveal(), rp.AccessKey.Reveal(), rp.SecretKey.Reveal()}, "\x00")
	if r, ok := c[key]; ok {
		return r, nil
	}
	r, err := g.openRepository(ctx, rp)
	if err != nil {
		return nil, err
	}
	c[key] = r
	return r, nil
}

// selectAssets is the named asset, or every asset when name is empty.
func selectAssets(p *policy.Policy, name string) ([]*policy.Asset, error) {
	if name != "" {
		a, err := p.Asset(name)
		if err != nil {
			return nil, &usageError{Err: err}
		}
		return []*policy.Asset{a}, nil
	}
	var out []*policy.Asset
	for i := range p.Assets {
		out = append(out, &p.Assets[i])
	}
	return out, nil
}

// repositoryStatus fills the newest snapshot and WAL of the asset in one
// repository and returns the repository (nil when it cannot be opened)
// and the asset's snapshots there (ID to start time).
func (g *globalOptions) repositoryStatus(ctx context.Context, a *policy.Asset, rp *policy.Repository, row *statusRow, cache repoCache) (*repo.Repository, map[string]time.Time, error) {
	r, err := cache.open(ctx, g, rp)
	if err != nil {
		return nil, nil, err
	}
	snaps, err := r.Snapshots(ctx, a.Name)
	if err != nil {
		return r, nil, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	ids := make(map[string]time.Time, len(snaps))
	for _, s := range snaps {
		ids[s.ID.String()] = s.StartTime
		if s.StartTime.After(row.LastSnapshotStart) {
			row.LastSnapshotStart = s.StartTime
		}
		if end := rowFor(rp.Name, s).StopTime; end.After(row.LastSnapshotTime) {
			row.LastSnapshot, row.LastSnapshotTime = s.ID.String(), end
		}
	}
	row.Snapshots = len(snaps)
	if row.NewestWAL, row.NewestWALTime, err = postgres.NewestWAL(ctx, r, a.Name); err != nil {
		return r, ids, fmt.Errorf("repository %s: %w", rp.Name, err)
	}
	return r, ids, nil
}

// copyStatus fills the lag of the copy rp behind primary.
func (g *globalOptions) copyStatus(ctx context.Context, p *policy.Policy, a *policy.Asset, rp *policy.Repository, primary *repo.Repository, primaryIDs, ids map[string]time.Time, row *statusRow, now time.Time) error {
	lag := &copyLag{}
	row.Lag = lag
	if st, err := queueStatusOf(queueDir(p, rp)); err != nil {
		return err
	} else {
		lag.Queue = st
	}
	if primary == nil || primaryIDs == nil || ids == nil {
		return nil // already reported: a repository could not be read
	}
	for id, start := range primaryIDs {
		if _, ok := ids[id]; !ok {
			lag.Snapshots++
			if lag.OldestMissingSnapshot.IsZero() || start.Before(lag.OldestMissingSnapshot) {
				lag.OldestMissingSnapshot = start
			}
		}
	}
	dst, err := app.OpenBackend(ctx, rp)
	if err != nil {
		return err
	}
	defer dst.Close()
	wal, err := primary.LagOf(ctx, dst, postgres.WALPrefix(a.Name), true)
	if err != nil {
		return err
	}
	lag.WALFiles, lag.WALBytes = wal.Missing, wal.Bytes
	if !wal.Oldest.IsZero() {
		lag.WALSeconds = max(0, now.Sub(wal.Oldest).Seconds())
	}
	return nil
}

// queueStatusOf reads a copy queue without creating it; nil when this
// host never queued anything for the copy.
func queueStatusOf(dir string) (*queueStatus, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	q, err := copyqueue.Open(dir)
	if err != nil {
		return nil, err
	}
	st, err := q.Stats()
	if err != nil {
		return nil, err
	}
	return &queueStatus{Dir: dir, Entries: st.Entries, Bytes: st.Bytes, Oldest: st.Oldest, Damaged: st.Damaged,
		LastError: st.LastError, LastErrorTime: st.LastErrorTime}, nil
}

func printStatus(g *globalOptions, rows []statusRow, now time.Time) error {
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04:05") + " (" + now.Sub(t).Round(time.Second).String() + " ago)"
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ASSET\tREPOSITORY\tROLE\tSNAPSHOTS\tLAST SNAPSHOT\tNEWEST WAL\tLAG")
	var notes []string
	for _, r := range rows {
		lag := "-"
		if r.Lag != nil {
			l := r.Lag
			lag = fmt.Sprintf("%d WAL files (%s), %d snapshots", l.WALFiles, humanBytes(l.WALBytes), l.Snapshots)
			if l.WALFiles > 0 {
				lag += fmt.Sprintf(", oldest %s", time.Duration(l.WALSeconds*float64(time.Second)).Round(time.Second))
			}
			if q := l.Queue; q != nil {
				lag += fmt.Sprintf("; queue %d", q.Entries)
				if q.Entries > 0 {
					lag += fmt.Sprintf(" (%s, oldest %s)", humanBytes(q.Bytes), now.Sub(q.Oldest).Round(time.Second))
				}
				if q.LastError != "" {
					notes = append(notes, fmt.Sprintf("%s: the last copy from the queue failed at %s: %s",
						r.Repository, q.LastErrorTime.Local().Format(time.DateTime), q.LastError))
				}
				if q.Damaged > 0 {
					notes = append(notes, fmt.Sprintf("%s: %d damaged queue entries set aside in %s; run lifeboat copy to catch the copy up",
						r.Repository, q.Damaged, q.Dir))
				}
			}
		}
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: %s", r.Repository, r.Error))
		}
		wal := "-"
		if r.NewestWAL != "" {
			wal = r.NewestWAL + " " + ago(r.NewestWALTime)
		}
		last := "-"
		if r.LastSnapshot != "" {
			last = r.LastSnapshot[:8] + " " + ago(r.LastSnapshotTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Asset, r.Repository, r.Role, r.Snapshots, last, wal, lag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(g.stdout, "!", n)
	}
	return nil
}
