package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

type results struct {
	Machine    map[string]string `json:"machine"`
	Database   databaseInfo      `json:"database"`
	Jobs       int               `json:"jobs"`
	DropCaches bool              `json:"drop_caches"`
	Started    time.Time         `json:"started"`
	Modes      []*modeResult     `json:"modes"`
}

// dumpStep is one backup: the command's cost and what the repository got.
type dumpStep struct {
	step
	Bytes       int64 `json:"bytes"`        // dump size (the file, or the snapshot's total)
	BytesNew    int64 `json:"bytes_new"`    // lifeboat: plaintext bytes of new blobs
	BytesStored int64 `json:"bytes_stored"` // lifeboat: bytes written to the repository
}

type modeResult struct {
	Mode        string `json:"mode"`
	Description string `json:"description"`
	Updated     int64  `json:"rows_updated"`
	Inserted    int64  `json:"rows_inserted"`
	// First and nightly dumps, pg_dump -Fc (to a file, its default
	// compression) and lifeboat backup, each in the same state.
	PGDumpFirst     dumpStep `json:"pg_dump_first"`
	LifeboatFirst   dumpStep `json:"lifeboat_first"`
	PGDumpNightly   dumpStep `json:"pg_dump_nightly"`
	LifeboatNightly dumpStep `json:"lifeboat_nightly"`
	PGRestore       step     `json:"pg_restore"`       // the run of median wall time
	LifeboatRestore step     `json:"lifeboat_restore"` // the same
	// Every restore's wall time, in run order.
	PGRestoreWalls       []float64 `json:"pg_restore_walls"`
	LifeboatRestoreWalls []float64 `json:"lifeboat_restore_walls"`
	RestoreChecked       string    `json:"restore_checked"` // count, sum and digest both restores agree on with the source
	// Ratios against the targets.
	StoredRatio      float64 `json:"stored_ratio"`       // nightly stored / first stored (target <= 0.10)
	NewRatio         float64 `json:"new_ratio"`          // nightly new / first new
	DumpWallFirst    float64 `json:"dump_wall_first"`    // lifeboat / pg_dump -Fc, first (target <= 1.0)
	DumpWallNightly  float64 `json:"dump_wall_nightly"`  // the same, nightly
	RestoreWallRatio float64 `json:"restore_wall_ratio"` // lifeboat restore / pg_restore -j (target <= 1.0)
	Profile          string  `json:"profile"`            // CPU profile of the nightly lifeboat backup
}

var modeDescriptions = map[string]string{
	"recent":  "1% of the rows updated, chosen at random among the newest 10%, then 1% inserted",
	"uniform": "1% of the rows updated, a Bernoulli sample of the whole table, then 1% inserted",
}

// changeSQL applies a day of changes and returns "updated|inserted".
func changeSQL(mode string, rows int64) string {
	pick := "SELECT id FROM transactions TABLESAMPLE BERNOULLI (1)"
	if mode == "recent" {
		pick = fmt.Sprintf("SELECT id FROM transactions WHERE id > (SELECT max(id) FROM transactions) - %d ORDER BY random() LIMIT %d", rows/10, rows/100)
	}
	return fmt.Sprintf(`WITH u AS (UPDATE transactions SET amount = amount + 0.01, memo = memo || ' adjusted' WHERE id IN (%s) RETURNING 1)
SELECT count(*) FROM u;
%s
SELECT count(*) FROM transactions WHERE booked_at >= '2030-01-01';`, pick, rowsSQL(rows/100, "2030-01-01T00:00:00Z"))
}

func (b *bench) runMode(ctx context.Context, mode string) (*modeResult, error) {
	m := &modeResult{Mode: mode, Description: modeDescriptions[mode]}
	dir := filepath.Join(b.cfg.root, "mode-"+mode)
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := b.mkdir(dir); err != nil {
		return nil, err
	}
	if err := b.mkdir(filepath.Join(b.cfg.root, "profiles")); err != nil {
		return nil, err
	}
	if err := b.resetDatabase(ctx); err != nil {
		return nil, err
	}
	policy := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`state_dir: %s
repositories:
  - name: bench
    url: file://%s
    key_file: %s
assets:
  - name: nightly
    kind: pg_dump
    dsn: "%s"
    repositories: [bench]
`, filepath.Join(dir, "state"), filepath.Join(dir, "repo"), filepath.Join(dir, "repo.key"), b.dsn("transactions"))), 0o644); err != nil {
		return nil, err
	}
	lb := func(args ...string) (string, step, error) {
		return b.cmd(ctx, "", b.cfg.lifeboat, append([]string{"-c", policy}, args...)...)
	}
	if _, _, err := lb("repo", "init"); err != nil {
		return nil, err
	}
	pgDumpFile := filepath.Join(dir, "pg_dump.dump")
	pgDump := func() (dumpStep, error) {
		os.Remove(pgDumpFile)
		b.dropCaches()
		_, st, err := b.cmd(ctx, "", b.tool("pg_dump"), "-Fc", "-f", pgDumpFile, "-d", b.dsn("transactions"))
		fi, serr := os.Stat(pgDumpFile)
		if err == nil && serr != nil {
			err = serr
		}
		d := dumpStep{step: st}
		if fi != nil {
			d.Bytes = fi.Size()
		}
		return d, err
	}
	backup := func(profile string) (dumpStep, error) {
		b.dropCaches()
		args := []string{"backup", "nightly"}
		if profile != "" {
			args = append([]string{"--cpu-profile", profile}, args...)
		}
		_, st, err := lb(args...)
		if err != nil {
			return dumpStep{}, err
		}
		out, _, err := lb("snapshots", "nightly", "--json")
		if err != nil {
			return dumpStep{}, err
		}
		var snaps []struct {
			BytesTotal  int64 `json:"bytes_total"`
			BytesNew    int64 `json:"bytes_new"`
			BytesStored int64 `json:"bytes_stored"`
		}
		if err := json.Unmarshal([]byte(out), &snaps); err != nil || len(snaps) == 0 {
			return dumpStep{}, fmt.Errorf("snapshots: %v: %s", err, out)
		}
		s := snaps[len(snaps)-1]
		return dumpStep{step: st, Bytes: s.BytesTotal, BytesNew: s.BytesNew, BytesStored: s.BytesStored}, nil
	}

	var err error
	fmt.Fprintf(b.log, "lbdump: %s: first dumps\n", mode)
	if m.PGDumpFirst, err = pgDump(); err != nil {
		return nil, err
	}
	if m.LifeboatFirst, err = backup(""); err != nil {
		return nil, err
	}
	fmt.Fprintf(b.log, "lbdump: %s: a day of changes: %s\n", mode, m.Description)
	out, err := b.psql(ctx, "transactions", changeSQL(mode, b.cfg.rows))
	if err != nil {
		return nil, err
	}
	if lines := strings.Fields(out); len(lines) == 2 {
		m.Updated, _ = strconv.ParseInt(lines[0], 10, 64)
		m.Inserted, _ = strconv.ParseInt(lines[1], 10, 64)
	}
	if _, err := b.psql(ctx, "transactions", "CHECKPOINT"); err != nil {
		return nil, err
	}
	fmt.Fprintf(b.log, "lbdump: %s: nightly dumps\n", mode)
	if m.PGDumpNightly, err = pgDump(); err != nil {
		return nil, err
	}
	m.Profile = filepath.Join(b.cfg.root, "profiles", "backup-nightly-"+mode+".pprof")
	if m.LifeboatNightly, err = backup(m.Profile); err != nil {
		return nil, err
	}

	fmt.Fprintf(b.log, "lbdump: %s: restores\n", mode)
	jobs := strconv.Itoa(b.cfg.jobs)
	const digest = "SELECT count(*) || ' rows, sum ' || sum(amount) || ', digest ' || md5(string_agg(md5(t::text), '' ORDER BY id)) FROM transactions t"
	want, err := b.psql(ctx, "transactions", digest)
	if err != nil {
		return nil, err
	}
	m.RestoreChecked = want
	restore := func(tool string) (step, error) {
		if _, err := b.psql(ctx, "postgres", "DROP DATABASE IF EXISTS restored; CREATE DATABASE restored;"); err != nil {
			return step{}, err
		}
		b.dropCaches()
		var st step
		var err error
		if tool == "pg_restore" {
			_, st, err = b.cmd(ctx, "", b.tool("pg_restore"), "-j", jobs, "-d", b.dsn("restored"), pgDumpFile)
		} else {
			_, st, err = lb("restore", "nightly", "--to-dsn", b.dsn("restored"), "--workers", jobs)
		}
		if err != nil {
			return st, err
		}
		got, err := b.psql(ctx, "restored", digest)
		if err == nil && got != want {
			err = fmt.Errorf("%s restored %s, want %s", tool, got, want)
		}
		return st, err
	}
	var pgRuns, lbRuns []step
	for i := 0; i < b.cfg.restores; i++ {
		order := []string{"pg_restore", "lifeboat"}
		if i%2 == 1 {
			order = []string{"lifeboat", "pg_restore"}
		}
		for _, tool := range order {
			st, err := restore(tool)
			if err != nil {
				return nil, err
			}
			if tool == "pg_restore" {
				pgRuns = append(pgRuns, st)
			} else {
				lbRuns = append(lbRuns, st)
			}
		}
	}
	m.PGRestore, m.LifeboatRestore = median(pgRuns), median(lbRuns)
	for i := range pgRuns {
		m.PGRestoreWalls = append(m.PGRestoreWalls, pgRuns[i].Wall)
		m.LifeboatRestoreWalls = append(m.LifeboatRestoreWalls, lbRuns[i].Wall)
	}
	if _, err := b.psql(ctx, "postgres", "DROP DATABASE restored"); err != nil {
		return nil, err
	}

	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	m.StoredRatio = ratio(float64(m.LifeboatNightly.BytesStored), float64(m.LifeboatFirst.BytesStored))
	m.NewRatio = ratio(float64(m.LifeboatNightly.BytesNew), float64(m.LifeboatFirst.BytesNew))
	m.DumpWallFirst = ratio(m.LifeboatFirst.Wall, m.PGDumpFirst.Wall)
	m.DumpWallNightly = ratio(m.LifeboatNightly.Wall, m.PGDumpNightly.Wall)
	m.RestoreWallRatio = ratio(m.LifeboatRestore.Wall, m.PGRestore.Wall)
	return m, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func (m *modeResult) print(w io.Writer, jobs int) {
	fmt.Fprintf(w, "\nmode %s: %s (%d updated, %d inserted)\n", m.Mode, m.Description, m.Updated, m.Inserted)
	fmt.Fprintf(w, "  first dump:    pg_dump -Fc %6.2fs (%s file, cpu %.1fs)   lifeboat backup %6.2fs (%s dump, %s new, %s stored, cpu %.1fs, rss %s)\n",
		m.PGDumpFirst.Wall, mib(m.PGDumpFirst.Bytes), m.PGDumpFirst.CPU, m.LifeboatFirst.Wall, mib(m.LifeboatFirst.Bytes),
		mib(m.LifeboatFirst.BytesNew), mib(m.LifeboatFirst.BytesStored), m.LifeboatFirst.CPU, mib(m.LifeboatFirst.MaxRSS))
	fmt.Fprintf(w, "  nightly dump:  pg_dump -Fc %6.2fs (%s file, cpu %.1fs)   lifeboat backup %6.2fs (%s dump, %s new, %s stored, cpu %.1fs, rss %s)\n",
		m.PGDumpNightly.Wall, mib(m.PGDumpNightly.Bytes), m.PGDumpNightly.CPU, m.LifeboatNightly.Wall, mib(m.LifeboatNightly.Bytes),
		mib(m.LifeboatNightly.BytesNew), mib(m.LifeboatNightly.BytesStored), m.LifeboatNightly.CPU, mib(m.LifeboatNightly.MaxRSS))
	fmt.Fprintf(w, "  restore:       pg_restore -j %d %6.2fs %v   lifeboat restore --workers %d %6.2fs %v   (medians; %s)\n",
		jobs, m.PGRestore.Wall, walls(m.PGRestoreWalls), jobs, m.LifeboatRestore.Wall, walls(m.LifeboatRestoreWalls), m.RestoreChecked)
	fmt.Fprintf(w, "  target nightly stored <= 10%% of first:     %5.1f%% stored (%5.1f%% of new bytes)  %s\n",
		100*m.StoredRatio, 100*m.NewRatio, verdict(m.StoredRatio <= 0.10))
	fmt.Fprintf(w, "  target dump wall <= 1.0x pg_dump -Fc:       first %.2fx, nightly %.2fx  %s\n",
		m.DumpWallFirst, m.DumpWallNightly, verdict(m.DumpWallFirst <= 1.0 && m.DumpWallNightly <= 1.0))
	fmt.Fprintf(w, "  target restore wall <= 1.0x pg_restore -j: %.2fx  %s\n", m.RestoreWallRatio, verdict(m.RestoreWallRatio <= 1.0))
	fmt.Fprintf(w, "  CPU profile of the nightly lifeboat backup: %s\n", m.Profile)
}

// median is the step of median wall time.
func median(steps []step) step {
	s := slices.Clone(steps)
	slices.SortFunc(s, func(a, b step) int { return cmp.Compare(a.Wall, b.Wall) })
	return s[len(s)/2]
}

func walls(w []float64) string {
	parts := make([]string, len(w))
	for i, v := range w {
		parts[i] = fmt.Sprintf("%.2f", v)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
