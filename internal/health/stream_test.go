package health

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

func TestWALSlot(t *testing.T) {
	t.Parallel()
	a := &policy.Asset{Name: "ledger"}
	safe := func(n int64) *int64 { return &n }
	const gib = 1 << 30
	cases := []struct {
		name string
		f    SlotFacts
		ok   bool
		want string
	}{
		{"unreadable", SlotFacts{Slot: "lifeboat_ledger", Error: "connection refused"}, false, "state unknown: connection refused"},
		{"absent", SlotFacts{Slot: "lifeboat_ledger"}, false, "does not exist"},
		{"under threshold", SlotFacts{Slot: "lifeboat_ledger", Exists: true, Active: true, WALStatus: "reserved", RetainedBytes: 16 << 20, MaxRetained: gib},
			true, "holds 16.0 MiB of WAL (threshold 1.0 GiB, connected); max_slot_wal_keep_size is unlimited"},
		{"past threshold", SlotFacts{Slot: "lifeboat_ledger", Exists: true, WALStatus: "reserved", RetainedBytes: 3 * gib / 2, MaxRetained: gib},
			false, "holds 1.5 GiB of WAL in pg_wal, more than slot_max_retained 1.0 GiB (no stream connected)"},
		{"near keep size", SlotFacts{Slot: "lifeboat_ledger", Exists: true, Active: true, WALStatus: "reserved", RetainedBytes: 1 << 20, SafeBytes: safe(100 << 20), MaxRetained: gib},
			false, "can take only 100.0 MiB more WAL"},
		{"unreserved", SlotFacts{Slot: "lifeboat_ledger", Exists: true, WALStatus: "unreserved", SafeBytes: safe(-1), MaxRetained: gib},
			false, "about to lose WAL"},
		{"lost", SlotFacts{Slot: "lifeboat_ledger", Exists: true, WALStatus: "lost", MaxRetained: gib}, false, "has lost WAL"},
	}
	for _, tc := range cases {
		r := walSlot(a, &tc.f)
		if r.OK != tc.ok || !strings.Contains(r.Message, tc.want) || r.Check != CheckWALSlot || r.Asset != "ledger" {
			t.Errorf("%s: %+v, want ok=%v and %q", tc.name, r, tc.ok, tc.want)
		}
		if !tc.ok && tc.f.Exists && tc.f.Error == "" && tc.f.WALStatus != "lost" && !strings.Contains(r.Message, "max_slot_wal_keep_size") {
			t.Errorf("%s: no guidance about max_slot_wal_keep_size: %s", tc.name, r.Message)
		}
	}
	// Evaluate judges the slot of a streamed asset only.
	p := &policy.Policy{Assets: []policy.Asset{{Name: "ledger"}, {Name: "cfg"}}}
	rs := Evaluate(p, Facts{Assets: map[string]*AssetFacts{"ledger": {Slot: &cases[3].f}}})
	if r := find(t, rs, "ledger", CheckWALSlot, ""); r.OK || r.Value == nil || *r.Value != float64(3*gib/2) {
		t.Errorf("Evaluate: %+v", r)
	}
	for _, r := range rs {
		if r.Asset == "cfg" && r.Check == CheckWALSlot {
			t.Errorf("slot judged for an asset that does not stream: %+v", r)
		}
	}
}
