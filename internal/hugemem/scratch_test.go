package hugemem

import "testing"

// A released scratch buffer is what the next call of a similar size gets,
// and no more than maxKept stay mapped.
func TestScratchReuses(t *testing.T) {
	const n = 16<<20 + 5
	a, release := Scratch(n)
	if len(a) != n {
		t.Fatalf("len %d, want %d", len(a), n)
	}
	a[0], a[n-1] = 1, 2
	release()
	b, release := Scratch(n - 100)
	if len(b) != n-100 || &b[0] != &a[0] {
		t.Fatal("a released buffer of the size was not reused")
	}
	release()
	var frees []func()
	for range maxKept + 2 {
		_, free := Scratch(n)
		frees = append(frees, free)
	}
	for _, free := range frees {
		free()
	}
	kept.Lock()
	defer kept.Unlock()
	if len(kept.bufs) != maxKept {
		t.Fatalf("%d buffers kept, want %d", len(kept.bufs), maxKept)
	}
}
