package hugemem

import "testing"

func TestAllocIsUsableAndZeroed(t *testing.T) {
	for _, n := range []int{1, 4096, 3<<20 + 17} {
		buf, release := Alloc(n)
		if len(buf) != n {
			t.Fatalf("Alloc(%d) gave %d bytes", n, len(buf))
		}
		for i := range buf {
			if buf[i] != 0 {
				t.Fatalf("Alloc(%d): byte %d is %d, want 0", n, i, buf[i])
			}
			buf[i] = byte(i)
		}
		release()
	}
	if buf, release := Alloc(0); buf != nil {
		t.Fatal("Alloc(0) returned memory")
	} else {
		release()
	}
}
