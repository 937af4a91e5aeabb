package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// watchHeap writes the heap profile to path each time the heap in use
// reaches a new high, so the profile left at exit shows the peak
// (--heap-profile, for memory work; docs/benchmarks.md).
func watchHeap(path string) {
	go func() {
		var peak uint64
		var ms runtime.MemStats
		for range time.Tick(500 * time.Millisecond) {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak {
				continue
			}
			peak = ms.HeapInuse
			if f, err := os.Create(path); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
}
