//go:build !linux

package pgtest

import (
	"errors"
	"syscall"
)

func childSysProcAttr(uid, gid int) (*syscall.SysProcAttr, error) {
	return nil, errors.New("running the PostgreSQL tests as root is supported on Linux only; run them as a normal user")
}

func reapServers(pidDir string, uid int) {}
