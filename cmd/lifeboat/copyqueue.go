package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/copyqueue"
)

// startDrainer starts `lifeboat copy --queued` in the background, detached
// from archive_command, unless every queue already has a drainer. A queue
// busy now is still drained of what was just added: a drainer looks again
// after it lets go.
func (g *globalOptions) startDrainer(qs []*copyqueue.Queue) error {
	idle := false
	for _, q := range qs {
		busy, err := q.Busy()
		if err != nil {
			return err
		}
		idle = idle || !busy
	}
	if !idle {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cfg, err := filepath.Abs(g.configPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "-c", cfg, "copy", "--queued")
	// Its own session: PostgreSQL neither waits for it nor signals it
	// with the archiver's process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the copy drainer: %w", err)
	}
	return cmd.Process.Release()
}
