//go:build !linux

package s3test

import "syscall"

// sysProcAttr has nothing to add outside Linux, where there is no parent-death signal.
func sysProcAttr() *syscall.SysProcAttr {
	return nil
}
