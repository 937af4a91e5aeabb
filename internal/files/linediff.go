package files

import (
	"fmt"
	"strings"
)

// The line diff: Myers' O(ND) algorithm in its linear-space form (the
// "middle snake" divide and conquer), so memory stays proportional to the
// number of lines. Time is O((N+M)·D); a budget of steps bounds it for
// files that differ almost everywhere, past which the remaining pieces
// are shown as wholly deleted and inserted: still a correct diff, only
// not the shortest.

// diffBudget bounds the steps of one line diff (about a second of work).
const diffBudget = 50_000_000

type lineDiff struct {
	a, b   []int // line numbers interned: equal lines, equal ints
	delA   []bool
	insB   []bool
	vf, vb []int
	budget int
}

// splitLines cuts s into lines, each with its "\n" if it has one.
func splitLines(s string) []string {
	var lines []string
	for len(s) > 0 {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i+1])
		s = s[i+1:]
	}
	return lines
}

// diffLines marks which lines of a are deleted and which of b inserted
// to turn a into b.
func diffLines(a, b []string) (delA, insB []bool) {
	ids := make(map[string]int, len(a)+len(b))
	intern := func(lines []string) []int {
		out := make([]int, len(lines))
		for i, l := range lines {
			id, ok := ids[l]
			if !ok {
				id = len(ids)
				ids[l] = id
			}
			out[i] = id
		}
		return out
	}
	n, m := len(a), len(b)
	d := &lineDiff{a: intern(a), b: intern(b), delA: make([]bool, n), insB: make([]bool, m), budget: diffBudget}
	d.vf = make([]int, 2*(n+m)+3)
	d.vb = make([]int, 2*(n+m)+3)
	d.compare(0, n, 0, m)
	return d.delA, d.insB
}

func (d *lineDiff) replace(aLo, aHi, bLo, bHi int) {
	for i := aLo; i < aHi; i++ {
		d.delA[i] = true
	}
	for j := bLo; j < bHi; j++ {
		d.insB[j] = true
	}
}

func (d *lineDiff) compare(aLo, aHi, bLo, bHi int) {
	for aLo < aHi && bLo < bHi && d.a[aLo] == d.b[bLo] {
		aLo, bLo = aLo+1, bLo+1
	}
	for aLo < aHi && bLo < bHi && d.a[aHi-1] == d.b[bHi-1] {
		aHi, bHi = aHi-1, bHi-1
	}
	if aLo == aHi || bLo == bHi {
		d.replace(aLo, aHi, bLo, bHi)
		return
	}
	xs, ys, xe, ye, ok := d.middleSnake(aLo, aHi, bLo, bHi)
	// A split that does not shrink both halves cannot happen once common
	// ends are stripped; the check keeps a mistake from recursing forever.
	if !ok || (xs == aLo && ys == bLo && xe == aHi && ye == bHi) ||
		(xs-aLo)+(ys-bLo) >= (aHi-aLo)+(bHi-bLo) || (aHi-xe)+(bHi-ye) >= (aHi-aLo)+(bHi-bLo) {
		d.replace(aLo, aHi, bLo, bHi)
		return
	}
	d.compare(aLo, xs, bLo, ys)
	d.compare(xe, aHi, ye, bHi)
}

// middleSnake finds the middle snake of an optimal path from (aLo, bLo)
// to (aHi, bHi): it runs from (xs, ys) to (xe, ye), and the optimal path
// goes through both ends. It reports false when the budget runs out.
//
// vf[k] is the furthest x reached on diagonal k = x - y with D edits, vb
// the same from the far corner backwards, and -1 marks a diagonal no
// path reaches without leaving the grid: a point past the last line is
// no point at all, and letting it win the "furthest" comparison would
// hide the real path on that diagonal.
func (d *lineDiff) middleSnake(aLo, aHi, bLo, bHi int) (xs, ys, xe, ye int, ok bool) {
	n, m := aHi-aLo, bHi-bLo
	delta := n - m
	odd := delta&1 != 0
	off := n + m + 1 // diagonals k run from -(n+m) to n+m
	vf, vb := d.vf, d.vb
	// step extends diagonal k from the previous round's neighbours and
	// follows the snake; eq compares the x-th and y-th lines from the
	// start (forward) or from the end (backward).
	step := func(v []int, D, k int, eq func(x, y int) bool) (x0, x int) {
		x0 = -1
		if D == 0 {
			x0 = 0
		}
		if k > -D && v[off+k-1] >= 0 && v[off+k-1] < n { // delete a line of a
			x0 = v[off+k-1] + 1
		}
		if k < D && v[off+k+1] >= 0 && v[off+k+1]-(k+1) < m && v[off+k+1] > x0 { // insert a line of b
			x0 = v[off+k+1]
		}
		if x0 < 0 {
			v[off+k] = -1
			return -1, -1
		}
		x = x0
		for x < n && x-k < m && eq(x, x-k) {
			x++
		}
		d.budget -= x - x0 + 1
		v[off+k] = x
		return x0, x
	}
	fwd := func(x, y int) bool { return d.a[aLo+x] == d.b[bLo+y] }
	bwd := func(x, y int) bool { return d.a[aHi-1-x] == d.b[bHi-1-y] }
	maxD := (n + m + 1) / 2
	for D := 0; D <= maxD; D++ {
		for k := -D; k <= D; k += 2 {
			x0, x := step(vf, D, k, fwd)
			// The backward search, on diagonal delta-k of the reversed
			// sequences, has had D-1 edits so far.
			if x >= 0 && odd && delta-k >= -(D-1) && delta-k <= D-1 && vb[off+delta-k] >= 0 && x+vb[off+delta-k] >= n {
				return aLo + x0, bLo + x0 - k, aLo + x, bLo + x - k, true
			}
		}
		for k := -D; k <= D; k += 2 {
			x0, x := step(vb, D, k, bwd)
			if x >= 0 && !odd && delta-k >= -D && delta-k <= D && vf[off+delta-k] >= 0 && x+vf[off+delta-k] >= n {
				return aHi - x, bHi - (x - k), aHi - x0, bHi - (x0 - k), true
			}
		}
		if d.budget < 0 {
			return 0, 0, 0, 0, false
		}
	}
	return 0, 0, 0, 0, false
}

// unified renders the unified diff (three lines of context) that turns
// text a into text b, under the given file names; "" when they are equal.
func unified(nameA, nameB, a, b string) string {
	la, lb := splitLines(a), splitLines(b)
	delA, insB := diffLines(la, lb)
	type op struct {
		kind byte // ' ', '-', '+'
		i, j int  // the line's index in a (for ' ' and '-') and in b (' ', '+')
	}
	var ops []op
	for i, j := 0, 0; i < len(la) || j < len(lb); {
		switch {
		case i < len(la) && delA[i]:
			ops = append(ops, op{'-', i, j})
			i++
		case j < len(lb) && insB[j]:
			ops = append(ops, op{'+', i, j})
			j++
		default:
			ops = append(ops, op{' ', i, j})
			i, j = i+1, j+1
		}
	}
	const context = 3
	var sb strings.Builder
	for start := 0; start < len(ops); {
		for start < len(ops) && ops[start].kind == ' ' {
			start++
		}
		if start == len(ops) {
			break
		}
		if sb.Len() == 0 {
			fmt.Fprintf(&sb, "--- %s\n+++ %s\n", nameA, nameB)
		}
		// The hunk ends after the last change followed by more than
		// 2*context unchanged lines (or by the end).
		end, same := start, 0
		for k := start; k < len(ops) && same <= 2*context; k++ {
			if ops[k].kind == ' ' {
				same++
			} else {
				end, same = k+1, 0
			}
		}
		lo := max(start-context, 0)
		hi := min(end+context, len(ops))
		var na, nb int
		for _, o := range ops[lo:hi] {
			if o.kind != '+' {
				na++
			}
			if o.kind != '-' {
				nb++
			}
		}
		fmt.Fprintf(&sb, "@@ -%s +%s @@\n", hunkRange(ops[lo].i, na), hunkRange(ops[lo].j, nb))
		for _, o := range ops[lo:hi] {
			line := ""
			if o.kind == '+' {
				line = lb[o.j]
			} else {
				line = la[o.i]
			}
			sb.WriteByte(o.kind)
			sb.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				sb.WriteString("\n\\ No newline at end of file\n")
			}
		}
		start = hi
	}
	return sb.String()
}

// hunkRange is a hunk header's range: the first line (1-based) and the
// count, the count left out when it is one, and for an empty range the
// line before it.
func hunkRange(first, count int) string {
	switch count {
	case 0:
		return fmt.Sprintf("%d,0", first)
	case 1:
		return fmt.Sprintf("%d", first+1)
	}
	return fmt.Sprintf("%d,%d", first+1, count)
}
