package pgdrill

import (
	"slices"
	"testing"
)

func TestParseSelection(t *testing.T) {
	t.Parallel()
	sel, err := ParseSelection([]string{`app.Orders`, `"Sales"."Order ""Lines"""`, `"a.b".c`}, []string{"Audit", `"Audit"`})
	if err != nil {
		t.Fatal(err)
	}
	want := []Relation{{"app", "orders"}, {"Sales", `Order "Lines"`}, {"a.b", "c"}}
	if !slices.Equal(sel.Tables, want) {
		t.Fatalf("tables %q, want %q", sel.Tables, want)
	}
	if !slices.Equal(sel.Schemas, []string{"audit", "Audit"}) {
		t.Fatalf("schemas %q", sel.Schemas)
	}
	if got := sel.Tables[1].String(); got != `"Sales"."Order ""Lines"""` {
		t.Fatalf("quoted %s", got)
	}
	for _, bad := range []string{"orders", "a.b.c", `"a.b`, "a.", ".b", `a"b".c`, ""} {
		if _, err := ParseSelection([]string{bad}, nil); err == nil {
			t.Errorf("--table %q accepted", bad)
		}
	}
	if _, err := ParseSelection(nil, []string{"a.b"}); err == nil {
		t.Error("--schema a.b accepted")
	}
}
