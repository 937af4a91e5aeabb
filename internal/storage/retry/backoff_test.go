package retry

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := New(nil, Options{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}).(*backend)
	for _, tc := range []struct {
		attempt int
		ceiling time.Duration
	}{
		{1, 100 * time.Millisecond},
		{2, 200 * time.Millisecond},
		{3, 400 * time.Millisecond},
		{4, 800 * time.Millisecond},
		{5, time.Second},
		{50, time.Second},
	} {
		for range 100 {
			d := b.backoff(tc.attempt)
			if d < tc.ceiling/2 || d > tc.ceiling {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.ceiling/2, tc.ceiling)
			}
		}
	}
}

func TestDefaults(t *testing.T) {
	b := New(nil, Options{}).(*backend)
	if b.opts.MaxAttempts != DefaultMaxAttempts || b.opts.InitialDelay != DefaultInitialDelay ||
		b.opts.MaxDelay != DefaultMaxDelay || b.opts.Logger == nil {
		t.Errorf("defaults not applied: %+v", b.opts)
	}
}
