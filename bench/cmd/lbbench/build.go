package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// clusterConf is appended to postgresql.conf by the build, after the port
// and socket directory. The archiver starts with a command that discards
// segments; each tool's phase switches it.
var clusterConf = map[string]string{
	"wal_level":          "replica",
	"archive_mode":       "on",
	"archive_command":    discardArchiveCommand,
	"max_wal_size":       "4GB",
	"checkpoint_timeout": "15min",
	"shared_buffers":     "1GB",
}

// discardArchiveCommand lets the archiver drop segments between phases, so no
// tool inherits a backlog from the build or from the other tool.
const discardArchiveCommand = "/bin/true"

// ensureCluster reuses the cluster in the bench root when its marker matches
// the requested size, and builds it otherwise. It leaves the cluster running.
func (h *harness) ensureCluster(ctx context.Context) (clusterInfo, error) {
	info, err := loadMarker(h.cfg.root)
	if err != nil {
		return clusterInfo{}, err
	}
	if info != nil && !h.cfg.rebuild {
		if info.Scale != h.cfg.scale || info.TxRows != h.cfg.txRows {
			return clusterInfo{}, fmt.Errorf("the cluster in %s was built with -scale %d -tx-rows %d, not -scale %d -tx-rows %d: pass the same flags or -rebuild",
				h.cfg.root, info.Scale, info.TxRows, h.cfg.scale, h.cfg.txRows)
		}
		if _, err := os.Stat(filepath.Join(info.DataDir, "PG_VERSION")); err != nil {
			return clusterInfo{}, fmt.Errorf("cluster marker present but data directory is not: %w (pass -rebuild)", err)
		}
		h.cl.Port = info.Port
		h.logf("reusing the reference cluster in %s (built %s in %.0f s)", info.DataDir, info.BuiltAt.Format(time.RFC3339), info.BuildSeconds)
		if err := h.cl.start(ctx); err != nil {
			return clusterInfo{}, err
		}
		info.Reused = true
		return *info, nil
	}
	return h.buildCluster(ctx)
}

func (h *harness) buildCluster(ctx context.Context) (clusterInfo, error) {
	c := h.cl
	info := clusterInfo{Scale: h.cfg.scale, TxRows: h.cfg.txRows, DataDir: c.DataDir, SocketDir: c.SocketDir}
	begin := time.Now()
	step := func(name string, f func() error) error {
		h.logf("build: %s", name)
		t := time.Now()
		err := f()
		info.BuildSteps = append(info.BuildSteps, timedStep{Name: name, Seconds: time.Since(t).Seconds()})
		if err != nil {
			return fmt.Errorf("build cluster: %s: %w", name, err)
		}
		return nil
	}

	if err := os.Remove(filepath.Join(h.cfg.root, markerName)); err != nil && !os.IsNotExist(err) {
		return info, fmt.Errorf("remove old marker: %w", err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "PG_VERSION")); err == nil {
		if err := c.stop(ctx); err != nil {
			return info, err
		}
	}
	if err := os.RemoveAll(c.DataDir); err != nil {
		return info, fmt.Errorf("remove old data directory: %w", err)
	}
	if err := h.mkdirOwned(c.SocketDir, 0o755); err != nil {
		return info, err
	}
	port, err := pgbin.FreePort()
	if err != nil {
		return info, err
	}
	c.Port, info.Port = port, port

	err = step("initdb", func() error {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		// The locale is the one the harness's environment gave initdb
		// before the build went through pgbin; the cluster outlives runs,
		// so initdb syncs.
		return c.Init(ictx, pgbin.InitOptions{Locale: "C.UTF-8", Sync: true, Conf: clusterConf})
	})
	if err != nil {
		return info, err
	}
	if err := step("start", func() error { return c.start(ctx) }); err != nil {
		return info, err
	}
	err = step(fmt.Sprintf("pgbench -i -s %d", h.cfg.scale), func() error {
		_, err := h.r.run(ctx, cmdSpec{label: "build-pgbench-init", path: c.Bin.Path("pgbench"),
			args:    append(append([]string{"-i", "-s", strconv.Itoa(h.cfg.scale)}, c.ClientArgs()...), "postgres"),
			timeout: 6 * time.Hour})
		return err
	})
	if err != nil {
		return info, err
	}
	if err := step("create transactions", func() error {
		_, err := c.psql(ctx, "build-transactions", createTransactionsSQL)
		return err
	}); err != nil {
		return info, err
	}
	var loaded int64
	for i, n := range batches(h.cfg.txRows, h.cfg.batchRows) {
		name := fmt.Sprintf("insert transactions batch %d (%d rows, %d loaded)", i+1, n, loaded)
		if err := step(name, func() error {
			_, err := c.psql(ctx, "build-transactions", insertTransactionsSQL(n))
			return err
		}); err != nil {
			return info, err
		}
		loaded += n
	}
	if err := step("index transactions", func() error {
		_, err := c.psql(ctx, "build-transactions", indexTransactionsSQL)
		return err
	}); err != nil {
		return info, err
	}
	// Freezing now keeps an anti-wraparound vacuum from rewriting whole tables
	// in the middle of a later measurement.
	if err := step("vacuum freeze analyze", func() error {
		_, err := c.psql(ctx, "build-vacuum", "VACUUM (FREEZE, ANALYZE)")
		return err
	}); err != nil {
		return info, err
	}
	if err := step("checkpoint", func() error {
		_, err := c.psql(ctx, "build-checkpoint", "CHECKPOINT")
		return err
	}); err != nil {
		return info, err
	}
	info.BuildSeconds = time.Since(begin).Seconds()
	info.BuiltAt = time.Now().UTC()
	if err := h.describeCluster(ctx, &info); err != nil {
		return info, err
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return info, fmt.Errorf("encode cluster marker: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(h.cfg.root, markerName), append(b, '\n'), 0o644); err != nil {
		return info, err
	}
	h.logf("build: done in %.0f s; database %s", info.BuildSeconds, humanBytes(info.DatabaseBytes))
	return info, nil
}

// describeCluster fills the size, version and table figures of info.
func (h *harness) describeCluster(ctx context.Context, info *clusterInfo) error {
	c := h.cl
	var err error
	if info.DatabaseBytes, err = c.queryInt(ctx, "SELECT pg_database_size('postgres')"); err != nil {
		return err
	}
	if info.DataDirBytes, err = dirBytes(c.DataDir); err != nil {
		return err
	}
	if info.PGVersion, err = c.query(ctx, "SHOW server_version"); err != nil {
		return err
	}
	out, err := c.query(ctx, `SELECT c.relname || '|' || c.reltuples::bigint || '|' || pg_total_relation_size(c.oid)
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC`)
	if err != nil {
		return err
	}
	info.Tables = nil
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			continue
		}
		rows, _ := strconv.ParseInt(f[1], 10, 64)
		size, _ := strconv.ParseInt(f[2], 10, 64)
		info.Tables = append(info.Tables, tableSize{Name: f[0], Rows: rows, TotalBytes: size})
	}
	out, err = c.query(ctx, `SELECT name || '|' || current_setting(name) FROM pg_settings WHERE name IN
		('shared_buffers','max_wal_size','checkpoint_timeout','wal_level','archive_mode','data_checksums','wal_segment_size','server_version')
		ORDER BY name`)
	if err != nil {
		return err
	}
	info.Settings = nil
	for _, line := range strings.Split(out, "\n") {
		if name, value, ok := strings.Cut(line, "|"); ok {
			info.Settings = append(info.Settings, settingInfo{Name: name, Value: value})
		}
	}
	return nil
}
