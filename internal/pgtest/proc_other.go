//go:build !linux

package pgtest

import (
	"errors"
	"syscall"

	"github.com/lifeboat-dr/lifeboat/internal/pgbin"
)

func childSysProcAttr(*pgbin.User) (*syscall.SysProcAttr, error) {
	return nil, errors.New("running the PostgreSQL tests as root is supported on Linux only; run them as a normal user")
}

func reapServers(pidDir string, uid int) {}
