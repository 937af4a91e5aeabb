package drill

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

// serverSettings override what a restored configuration says about
// archiving, replication, extensions and TLS: a drill must never archive
// into the asset's repository, and the target starts without what the
// production host had around it. Without hot standby the server takes
// connections only once recovery is over and it is promoted. pgbin adds
// that it listens only on its private socket and logs to the drill's file.
var serverSettings = map[string]string{
	"archive_mode":             "off",
	"hot_standby":              "off",
	"max_wal_senders":          "0",
	"shared_preload_libraries": "",
	"ssl":                      "off",
}

// runAs picks the OS user the drill's servers run as (see pgbin.RunAs);
// name is the drill's --run-as.
func runAs(name, pgdata string) (*pgbin.User, error) {
	u, err := pgbin.RunAs(name, pgdata)
	if err != nil {
		return nil, fmt.Errorf("%w (the drill's --run-as names the OS user)", err)
	}
	return u, nil
}

// newServer makes the private directories of a throwaway server in the
// work directory, owned by as, and returns the server to be: its data
// directory is empty, and its programs and role are the caller's to set.
func (d *drill) newServer(as *pgbin.User) (*pgbin.Server, error) {
	// The work directory is the run-as user's too, or it could not
	// reach its own directories below it.
	if err := as.Chown(d.work); err != nil {
		return nil, err
	}
	var dirs [3]string
	for i, name := range []string{"data", "sock", "log"} {
		dirs[i] = filepath.Join(d.work, name)
		if err := as.MkdirPrivate(dirs[i]); err != nil {
			return nil, fmt.Errorf("the drill's server: %w", err)
		}
	}
	return &pgbin.Server{DataDir: dirs[0], SocketDir: dirs[1], LogFile: filepath.Join(dirs[2], "postgresql.log"),
		OS: as, Settings: serverSettings}, nil
}

// startServer starts srv, which the drill stops (immediately: it is thrown
// away, so nothing it holds needs a checkpoint) whatever happens.
func (d *drill) startServer(ctx context.Context, srv *pgbin.Server) error {
	d.cleanup = append(d.cleanup, func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.StopImmediate(ctx); err != nil {
			d.o.Log.Warn("drill: stop the throwaway server", "dir", srv.DataDir, "err", err)
		}
	})
	if err := srv.Start(ctx); err != nil {
		return fmt.Errorf("start the drill's server: %w", err)
	}
	return nil
}

// amcheck runs pg_amcheck over every database: the heap and the B-tree
// indexes, with jobs connections in parallel, installing the amcheck
// extension where it is missing (the target is thrown away, so the change
// is harmless). --heapallindexed is left out: it checks that every heap
// tuple is in each index, which took four times as long as the rest on the
// reference cluster (see docs/benchmarks.md), and a drill's RTO includes
// its checks.
func amcheck(ctx context.Context, srv *pgbin.Server, jobs int) (string, error) {
	if _, err := os.Stat(srv.Bin.Path("pg_amcheck")); err != nil {
		return "", fmt.Errorf("pg_amcheck not found in %s: install the PostgreSQL client programs of the same version", srv.Bin.Dir)
	}
	args := append([]string{"--all", "--install-missing", "--no-password", "--jobs", strconv.Itoa(max(jobs, 1))}, srv.ClientArgs()...)
	out, err := srv.Command(ctx, "pg_amcheck", args...).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		if text == "" {
			text = err.Error()
		}
		return text, fmt.Errorf("pg_amcheck found problems: %s", firstLines(text, 3))
	}
	return text, nil
}

// firstLines joins the first n lines of s with " | ".
func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more lines)", len(lines)-n))
	}
	return strings.Join(lines, " | ")
}
