package hugemem

import "sync"

// maxKept is how many released scratch buffers a process keeps for reuse:
// two per WAL push (the segment and its sealed form), two pushes at once.
const maxKept = 4

var kept struct {
	sync.Mutex
	bufs [][]byte // full mappings, as Alloc made them
}

// Scratch is Alloc for a buffer the caller overwrites before reading
// (its content is undefined: a buffer released earlier is reused). In a
// long-lived process (lifeboat serve taking WAL from wal-push) the
// kernel's zeroing of fresh huge pages was over half of the CPU of a push;
// reusing the buffers removes it. Up to four released buffers stay mapped
// for the next caller.
func Scratch(n int) (buf []byte, release func()) {
	if n <= 0 {
		return nil, func() {}
	}
	size := (n + hugePage - 1) / hugePage * hugePage
	kept.Lock()
	for i, b := range kept.bufs {
		if len(b) >= size && len(b) <= 2*size {
			kept.bufs = append(kept.bufs[:i], kept.bufs[i+1:]...)
			kept.Unlock()
			return b[:n], func() { keep(b) }
		}
	}
	kept.Unlock()
	b, _ := Alloc(size)
	return b[:n], func() { keep(b) }
}

// keep puts a released buffer back for reuse, or unmaps it when enough
// are kept (a buffer from the Go heap, which Munmap refuses, is left to
// the collector).
func keep(b []byte) {
	kept.Lock()
	if len(kept.bufs) < maxKept {
		kept.bufs = append(kept.bufs, b)
		kept.Unlock()
		return
	}
	kept.Unlock()
	unmap(b)
}
