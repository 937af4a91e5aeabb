package files

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// lcsLen is the length of a longest common subsequence, by dynamic
// programming: the reference the diff's size is checked against.
func lcsLen(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			switch {
			case a[i-1] == b[j-1]:
				cur[j] = prev[j-1] + 1
			case prev[j] >= cur[j-1]:
				cur[j] = prev[j]
			default:
				cur[j] = cur[j-1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkDiff checks that the marks turn a into b and are a shortest edit.
func checkDiff(t *testing.T, a, b []string) {
	t.Helper()
	delA, insB := diffLines(a, b)
	var keptA, keptB []string
	edits := 0
	for i, l := range a {
		if delA[i] {
			edits++
		} else {
			keptA = append(keptA, l)
		}
	}
	for j, l := range b {
		if insB[j] {
			edits++
		} else {
			keptB = append(keptB, l)
		}
	}
	if strings.Join(keptA, "|") != strings.Join(keptB, "|") {
		t.Fatalf("a=%q b=%q: kept lines differ: %q vs %q", a, b, keptA, keptB)
	}
	if want := len(a) + len(b) - 2*lcsLen(a, b); edits != want {
		t.Fatalf("a=%q b=%q: %d edits, the shortest has %d", a, b, edits, want)
	}
}

func TestDiffLinesIsShortest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 20000; iter++ {
		gen := func() []string {
			n := rng.IntN(14)
			out := make([]string, n)
			for i := range out {
				out[i] = string(rune('a' + rng.IntN(1+iter%5)))
			}
			return out
		}
		checkDiff(t, gen(), gen())
	}
	// Longer inputs with a few edits, as configuration changes look.
	for iter := 0; iter < 200; iter++ {
		a := make([]string, 300)
		for i := range a {
			a[i] = fmt.Sprint(rng.IntN(40))
		}
		b := append([]string(nil), a...)
		for e := 0; e < 10; e++ {
			k := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b = append(b[:k], b[k+1:]...)
			case 1:
				b = append(b[:k], append([]string{"new"}, b[k:]...)...)
			default:
				b[k] = "changed"
			}
		}
		checkDiff(t, a, b)
	}
}

func TestUnified(t *testing.T) {
	for _, tc := range []struct {
		name, a, b, want string
	}{
		{"equal", "x\ny\n", "x\ny\n", ""},
		{"change in the middle", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n",
			"--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"},
		{"added file", "", "x\ny\n", "--- a/f\n+++ b/f\n@@ -0,0 +1,2 @@\n+x\n+y\n"},
		{"removed last line", "x\ny\n", "x\n", "--- a/f\n+++ b/f\n@@ -1,2 +1 @@\n x\n-y\n"},
		{"no newline at end", "x\ny", "x\ny\n",
			"--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n x\n-y\n\\ No newline at end of file\n+y\n"},
		{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", "one\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\ntwelve\n",
			"--- a/f\n+++ b/f\n@@ -1,4 +1,4 @@\n-1\n+one\n 2\n 3\n 4\n@@ -9,4 +9,4 @@\n 9\n 10\n 11\n-12\n+twelve\n"},
		{"gap of six joins", "1\n2\n3\n4\n5\n6\n7\n8\n", "one\n2\n3\n4\n5\n6\n7\neight\n",
			"--- a/f\n+++ b/f\n@@ -1,8 +1,8 @@\n-1\n+one\n 2\n 3\n 4\n 5\n 6\n 7\n-8\n+eight\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := unified("a/f", "b/f", tc.a, tc.b); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// A file rewritten from end to end is the worst case: the budget must
// bound the time, and the diff must still be correct.
func TestUnifiedBoundedOnTotalRewrite(t *testing.T) {
	var a, b strings.Builder
	for i := 0; a.Len() < DefaultMaxTextSize; i++ {
		fmt.Fprintf(&a, "%d\n", i)
		fmt.Fprintf(&b, "%d\n", i*7919%100003+1_000_000)
	}
	start := time.Now()
	la, lb := splitLines(a.String()), splitLines(b.String())
	delA, insB := diffLines(la, lb)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("diff of %d and %d lines took %s", len(la), len(lb), d)
	}
	for i := range la {
		if !delA[i] {
			t.Fatalf("line %d of a kept, though no line is shared", i)
		}
	}
	for j := range lb {
		if !insB[j] {
			t.Fatalf("line %d of b kept, though no line is shared", j)
		}
	}
	t.Logf("%d vs %d lines in %s", len(la), len(lb), time.Since(start))
}
