package pgtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

func childSysProcAttr(u *pgbin.User) (*syscall.SysProcAttr, error) {
	return &syscall.SysProcAttr{
		Credential: u.Credential(),
		// If cmd/go kills the parent (timeout), the tests must not live on unobserved.
		Pdeathsig: syscall.SIGKILL,
	}, nil
}

// reapServers stops postmasters recorded in pidDir that are still running: a test process that
// panicked, timed out or was killed never ran its cleanups. SIGQUIT is PostgreSQL's immediate
// shutdown, which also ends the server's child processes.
func reapServers(pidDir string, uid int) {
	entries, err := os.ReadDir(pidDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(pidDir, e.Name()))
		if err != nil {
			continue
		}
		lines := strings.SplitN(string(b), "\n", 2)
		pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
		if err != nil || pid <= 1 || !isPostgresOf(pid, uid) {
			continue
		}
		dataDir := ""
		if len(lines) > 1 {
			dataDir = strings.TrimSpace(lines[1])
		}
		fmt.Fprintf(os.Stderr, "pgtest: stopping PostgreSQL left running by the tests (pid %d, data dir %s)\n", pid, dataDir)
		_ = syscall.Kill(pid, syscall.SIGQUIT)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// isPostgresOf guards against signalling a recycled PID: the process must be a postgres owned by uid.
func isPostgresOf(pid, uid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(string(comm)), "postgres") {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d", pid), &st); err != nil {
		return false
	}
	return int(st.Uid) == uid
}
