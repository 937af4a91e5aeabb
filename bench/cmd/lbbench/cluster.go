package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// cluster is the reference PostgreSQL cluster both tools back up, or a
// restored copy of it: a pgbin server, started and stopped as drills and
// tests start theirs, whose queries run through the harness's runner.
type cluster struct {
	*pgbin.Server
	r *runner
}

// clusterInfo is written as the completion marker once a build succeeds, and
// read back to reuse the cluster on later runs.
type clusterInfo struct {
	Scale         int           `json:"scale"`
	TxRows        int64         `json:"tx_rows"`
	Port          int           `json:"port"`
	DataDir       string        `json:"data_dir"`
	SocketDir     string        `json:"socket_dir"`
	DatabaseBytes int64         `json:"database_bytes"` // pg_database_size('postgres')
	DataDirBytes  int64         `json:"data_dir_bytes"` // every file under PGDATA, WAL included
	BuildSeconds  float64       `json:"build_seconds"`
	BuildSteps    []timedStep   `json:"build_steps"`
	BuiltAt       time.Time     `json:"built_at"`
	PGVersion     string        `json:"pg_version"`
	Tables        []tableSize   `json:"tables,omitempty"`
	Settings      []settingInfo `json:"settings,omitempty"`
	Reused        bool          `json:"reused"`
}

type timedStep struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

type tableSize struct {
	Name       string `json:"name"`
	Rows       int64  `json:"rows"`
	TotalBytes int64  `json:"total_bytes"` // heap + indexes + TOAST
}

type settingInfo struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// markerName is the file whose presence says the cluster in the bench root is
// complete; it is written last, atomically.
const markerName = "cluster.json"

// psql runs each statement as its own -c, so statements that refuse a
// transaction block (ALTER SYSTEM, VACUUM) can follow one another.
func (c *cluster) psql(ctx context.Context, label string, stmts ...string) (string, error) {
	args := append([]string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"}, c.ClientArgs()...)
	args = append(args, "-d", "postgres")
	for _, s := range stmts {
		args = append(args, "-c", s)
	}
	res, err := c.r.run(ctx, cmdSpec{label: label, path: c.Bin.Path("psql"), args: args, timeout: 6 * time.Hour})
	if err != nil {
		return "", fmt.Errorf("psql %s: %w", label, err)
	}
	return strings.TrimSpace(res.Stdout), nil
}

// query returns the single value of a one-row, one-column query.
func (c *cluster) query(ctx context.Context, sql string) (string, error) {
	return c.psql(ctx, "", sql)
}

func (c *cluster) queryInt(ctx context.Context, sql string) (int64, error) {
	s, err := c.query(ctx, sql)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse result of %q: %w", sql, err)
	}
	return v, nil
}

// restored describes a restored copy of the cluster in dataDir, on a port of
// its own, logging to logFile, started with settings and with env (a tool's:
// its restore_command reads it) added to the harness's environment.
func (c *cluster) restored(dataDir, logFile string, settings map[string]string, env []string) *cluster {
	return &cluster{r: c.r, Server: &pgbin.Server{Bin: c.Bin, DataDir: dataDir, SocketDir: c.SocketDir, LogFile: logFile,
		OS: c.OS, Env: append(slices.Clone(c.Env), env...), Settings: settings}}
}

// stopNow stops a restored copy without a checkpoint: it is thrown away.
func (c *cluster) stopNow(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	_ = c.StopImmediate(ctx)
}

// start starts the cluster unless it runs, giving crash recovery ten
// minutes.
func (c *cluster) start(ctx context.Context) error {
	if c.Running() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("start cluster (see %s): %w", c.LogFile, err)
	}
	return nil
}

// stop shuts the cluster down cleanly, giving the checkpoint ten minutes.
func (c *cluster) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		return fmt.Errorf("stop cluster: %w", err)
	}
	return nil
}

// setArchiveCommand switches the archiver to cmd and waits until the server
// reports it, since pg_reload_conf only signals the postmaster.
func (c *cluster) setArchiveCommand(ctx context.Context, cmd string) error {
	if _, err := c.psql(ctx, "archive_command",
		"ALTER SYSTEM SET archive_command = "+sqlQuote(cmd), "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("set archive_command: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := c.query(ctx, "SHOW archive_command")
		if err != nil {
			return err
		}
		if got == cmd {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("archive_command is still %q after reload, want %q", got, cmd)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readyCount is the number of completed WAL segments (and history/backup
// files) the archiver has not yet archived.
func (c *cluster) readyCount() int {
	entries, err := os.ReadDir(filepath.Join(c.DataDir, "pg_wal", "archive_status"))
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".ready") {
			n++
		}
	}
	return n
}

// waitArchived waits until nothing is left for the archiver, or timeout.
func (c *cluster) waitArchived(ctx context.Context, timeout time.Duration) (time.Duration, bool) {
	start := time.Now()
	for {
		if c.readyCount() == 0 {
			return time.Since(start), true
		}
		if time.Since(start) > timeout || ctx.Err() != nil {
			return time.Since(start), false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// archiverState reports how far the archiver is behind the WAL insert
// position, in segments that are complete but not yet archived.
type archiverState struct {
	LastArchivedWAL string `json:"last_archived_wal"`
	CurrentWAL      string `json:"current_wal"`
	LagSegments     int64  `json:"lag_segments"`
	ReadyFiles      int    `json:"ready_files"`
	FailedCount     int64  `json:"failed_count"`
	LastFailedWAL   string `json:"last_failed_wal,omitempty"`
}

func (c *cluster) archiver(ctx context.Context, segSize int64) (archiverState, error) {
	out, err := c.query(ctx, `SELECT coalesce(last_archived_wal, '') || '|' || pg_walfile_name(pg_current_wal_lsn())
		|| '|' || failed_count || '|' || coalesce(last_failed_wal, '') FROM pg_stat_archiver`)
	if err != nil {
		return archiverState{}, err
	}
	f := strings.Split(out, "|")
	if len(f) != 4 {
		return archiverState{}, fmt.Errorf("unexpected pg_stat_archiver row %q", out)
	}
	st := archiverState{LastArchivedWAL: f[0], CurrentWAL: f[1], LastFailedWAL: f[3], ReadyFiles: c.readyCount()}
	st.FailedCount, _ = strconv.ParseInt(f[2], 10, 64)
	st.LagSegments = walLag(st.LastArchivedWAL, st.CurrentWAL, segSize)
	return st, nil
}

// walLag is the number of segments between the last archived one and the one
// being written, exclusive of both: 0 means the archiver is caught up. An
// unparsable or missing last-archived name yields -1 (unknown).
func walLag(lastArchived, current string, segSize int64) int64 {
	cur, ok1 := walSegNo(current, segSize)
	last, ok2 := walSegNo(lastArchived, segSize)
	if !ok1 || !ok2 {
		return -1
	}
	return max(int64(cur)-int64(last)-1, 0)
}

// walSegNo returns the absolute segment number a WAL file name points at,
// ignoring the timeline. Names of .backup and .partial files carry the
// segment in their first 24 characters and parse too.
func walSegNo(name string, segSize int64) (uint64, bool) {
	if len(name) < 24 || segSize <= 0 || (1<<32)%segSize != 0 {
		return 0, false
	}
	logID, err1 := strconv.ParseUint(name[8:16], 16, 32)
	seg, err2 := strconv.ParseUint(name[16:24], 16, 32)
	if _, err := strconv.ParseUint(name[0:8], 16, 32); err != nil || err1 != nil || err2 != nil {
		return 0, false
	}
	perLog := uint64((1 << 32) / segSize)
	if seg >= perLog {
		return 0, false
	}
	return logID*perLog + seg, true
}

// loadMarker reads the completion marker; a missing marker is (nil, nil).
func loadMarker(root string) (*clusterInfo, error) {
	b, err := os.ReadFile(filepath.Join(root, markerName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster marker: %w", err)
	}
	var info clusterInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("parse cluster marker %s: %w", filepath.Join(root, markerName), err)
	}
	return &info, nil
}

// writeFileAtomic writes data to path through a temporary file and rename, so
// a crash never leaves a half-written marker that looks complete.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
