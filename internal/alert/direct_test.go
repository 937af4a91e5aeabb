package alert

import (
	"strings"
	"testing"
)

// TestFleetKey: the host is part of a fleet problem's key, escaped like
// the other parts, and a long key stays within PagerDuty's limit while
// staying unique.
func TestFleetKey(t *testing.T) {
	t.Parallel()
	p := Problem{Asset: "ledger", Check: "copy", Subject: "dr"}
	if got := FleetKey("db-1", p); got != "lifeboat/db-1/ledger/copy/dr" {
		t.Fatalf("FleetKey = %q", got)
	}
	if a, b := FleetKey("a/b", Problem{Asset: "c", Check: "x"}), FleetKey("a", Problem{Asset: "b/c", Check: "x"}); a == b {
		t.Fatalf("two problems share the key %q", a)
	}
	long := strings.Repeat("h", 300)
	k1, k2 := FleetKey(long+"1", p), FleetKey(long+"2", p)
	if len(k1) > maxKeyLen || k1 == k2 {
		t.Fatalf("long keys: %d bytes, equal %v", len(k1), k1 == k2)
	}
}

// TestSendNamesAnUnknownDestination: Send refuses a destination the
// policy does not have, by name.
func TestSendNamesAnUnknownDestination(t *testing.T) {
	t.Parallel()
	n, err := New(nil, "", Options{Host: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Send(t.Context(), "pager", Message{Key: "k"}); err == nil || !strings.Contains(err.Error(), "pager") {
		t.Fatalf("Send to an unknown destination: %v", err)
	}
}
