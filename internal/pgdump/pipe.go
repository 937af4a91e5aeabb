package pgdump

import "os"

// pipeSize is asked of the kernel for pipes to and from the PostgreSQL
// programs: with the default 64 KiB, a dump streaming at hundreds of MB/s
// makes both sides wake for every few kilobytes. 1 MiB is the most an
// unprivileged process may ask by default (fs.pipe-max-size).
const pipeSize = 1 << 20

// bigPipe is os.Pipe with the larger buffer where the kernel grants it;
// elsewhere, or when refused, the default stays.
func bigPipe() (r, w *os.File, err error) {
	r, w, err = os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	if rc, err := w.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { setPipeSize(fd, pipeSize) })
	}
	return r, w, nil
}
