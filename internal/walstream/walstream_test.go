package walstream

import (
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestSlotName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"ledger":                "lifeboat_ledger",
		"Books-EU.prod":         "lifeboat_books_eu_prod",
		strings.Repeat("a", 80): "lifeboat_" + strings.Repeat("a", 54),
	} {
		if got := SlotName(in); got != want {
			t.Errorf("SlotName(%q) = %q, want %q", in, got, want)
		}
	}
}

// A segment wholly before a switch point is streamed on the timeline that
// wrote it; the segment holding the switch, and later ones, on the next.
func TestSegmentTimeline(t *testing.T) {
	t.Parallel()
	const seg = 16 << 20
	history := []byte("1\t0/3000060\tno recovery target specified\n\n2\t0/5000000\tbefore 2000-01-01\n")
	cases := []struct {
		start pglogrepl.LSN
		want  uint32
	}{
		{0x1000000, 1}, // segment 1 ends at 0/2000000, before the first switch
		{0x2000000, 1}, // segment 2 ends at 0/3000000, still before 0/3000060
		{0x3000000, 2}, // holds the switch to timeline 2
		{0x4000000, 2}, // ends exactly at the second switch point
		{0x5000000, 3}, // after every switch: the current timeline
	}
	for _, c := range cases {
		got, err := segmentTimeline(history, c.start, seg, 3)
		if err != nil || got != c.want {
			t.Errorf("segment at %s: timeline %d, %v; want %d", c.start, got, err, c.want)
		}
	}
	if _, err := segmentTimeline([]byte("x\t0/1\tbad\n"), 0, seg, 2); err == nil {
		t.Error("a bad history line was accepted")
	}
}
