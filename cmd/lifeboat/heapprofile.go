package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startHeapProfile, when LIFEBOAT_HEAP_PROFILE names a file, writes the
// heap profile there each time the heap in use reaches a new high, so the
// profile left at exit shows the peak (bench/memory.sh; docs/benchmarks.md).
// A developer's aid: nothing else reads the variable.
func startHeapProfile() {
	path := os.Getenv("LIFEBOAT_HEAP_PROFILE")
	if path == "" {
		return
	}
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
