package s3test

import "syscall"

// sysProcAttr makes the kernel kill the server when the test process dies without running its
// cleanups (a panic, or cmd/go killing it on timeout), so no MinIO outlives the tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
