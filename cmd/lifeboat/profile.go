package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startProfiles starts the profiles developers ask for (docs/benchmarks.md,
// "Profiling"), and returns what stops them before exit:
// LIFEBOAT_CPU_PROFILE names a file for the CPU profile of the whole run;
// LIFEBOAT_HEAP_PROFILE a file the heap profile is written to each time
// the heap in use reaches a new high, so the one left shows the peak.
func startProfiles() (stop func()) {
	stop = func() {}
	if path := os.Getenv("LIFEBOAT_CPU_PROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			stop = func() {
				pprof.StopCPUProfile()
				f.Close()
			}
		}
	}
	if path := os.Getenv("LIFEBOAT_HEAP_PROFILE"); path != "" {
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
	return stop
}
