package pgdump

import "syscall"

// fSetPipeSize is F_SETPIPE_SZ, which package syscall does not name.
const fSetPipeSize = 1031

func setPipeSize(fd uintptr, size int) {
	syscall.Syscall(syscall.SYS_FCNTL, fd, fSetPipeSize, uintptr(size))
}
