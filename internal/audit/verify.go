package audit

import (
	"cmp"
	"fmt"
	"slices"
)

// Located is a seal and where it was found ("repository primary").
type Located struct {
	Where string
	Seal  *Seal
}

// Break is the first broken link of a chain: the first event that is not
// as it was written, with why.
type Break struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

func (b *Break) Error() string { return fmt.Sprintf("event %d: %s", b.Seq, b.Reason) }

// Verifier walks a chain held on this host, event by event, and then
// holds it against the seals of the same chain found in repositories.
// Feed it every record in sequence order with Add, stopping at the first
// Break, then call Finish with the seals. Walking and reading the seals
// are independent, so they can run at the same time.
type Verifier struct {
	chain string
	n     uint64
	h     Hash
	// links[i] is event i+1's digest and the chain's hash after it.
	links []link
	brk   *Break
	seals int
}

type link struct{ digest, hash Hash }

// NewVerifier walks the chain called chain.
func NewVerifier(chain string) *Verifier {
	return &Verifier{chain: chain, h: Genesis(chain)}
}

// Expect makes room for n events.
func (v *Verifier) Expect(n uint64) { v.links = slices.Grow(v.links, int(n)) }

// Seals is how many seals of the chain Finish compared.
func (v *Verifier) Seals() int { return v.seals }

// Events is how many events have been added.
func (v *Verifier) Events() uint64 { return v.n }

// Head is the chain's hash after the events added.
func (v *Verifier) Head() Hash { return v.h }

// Add checks the next record of the chain.
func (v *Verifier) Add(r *Record) *Break {
	want := v.n + 1
	seq, err := BodySeq(r.Body)
	switch {
	case err != nil:
		v.brk = &Break{want, "its stored encoding was edited (it " + err.Error() + ")"}
	case r.Seq != seq && seq == want:
		v.brk = &Break{want, fmt.Sprintf("it is stored in the place of event %d (events were reordered)", r.Seq)}
	case seq > want && r.Seq == seq:
		v.brk = &Break{want, fmt.Sprintf("it is missing (deleted): the next event held is %d", seq)}
	case seq != want:
		v.brk = &Break{want, fmt.Sprintf("the event held in its place is event %d (events were reordered or deleted)", seq)}
	}
	if v.brk != nil {
		return v.brk
	}
	d := Digest(r.Body)
	h := Link(v.h, d)
	if h != r.Hash {
		v.brk = &Break{want, "it does not match its stored hash (edited)"}
		return v.brk
	}
	v.links = append(v.links, link{d, h})
	v.n, v.h = want, h
	return nil
}

// Finish holds the events walked against the seals of the chain (those
// of other chains are ignored) and returns the first broken link: the
// first event the walk found broken, or that differs from a seal, or
// that a seal holds and this host no longer does (the catalog was rolled
// back to an older copy, or its newest events deleted).
func (v *Verifier) Finish(seals []Located) *Break {
	first := v.brk
	better := func(b *Break) {
		if first == nil || b.Seq < first.Seq {
			first = b
		}
	}
	hashAt := func(seq uint64) (Hash, bool) {
		if seq == 0 {
			return Genesis(v.chain), true
		}
		if seq > v.n {
			return Hash{}, false
		}
		return v.links[seq-1].hash, true
	}
	var top *Located
	for i := range seals {
		l := &seals[i]
		s := l.Seal
		if s.Chain != v.chain {
			continue
		}
		v.seals++
		if s.Head > v.n && (top == nil || s.Head > top.Seal.Head) {
			top = l
		}
		if h, ok := hashAt(s.From - 1); ok && h != s.Prev {
			better(&Break{s.From - 1, fmt.Sprintf("the chain up to it differs from the one sealed in %s (an event up to here was rewritten on this host)", l.Where)})
		}
		for i, d := range s.Digests() {
			seq := s.From + uint64(i)
			if seq > v.n {
				break
			}
			if v.links[seq-1].digest != d {
				better(&Break{seq, fmt.Sprintf("it differs from the event sealed in %s (edited, replaced or reordered on this host)", l.Where)})
				break
			}
		}
		if h, ok := hashAt(s.Head); ok && h != s.HeadHash {
			better(&Break{s.Head, fmt.Sprintf("the chain up to it differs from the one sealed in %s (an event up to here was rewritten on this host)", l.Where)})
		}
	}
	if first == nil && top != nil {
		first = &Break{v.n + 1, fmt.Sprintf("events %d..%d are missing on this host but sealed in %s (the catalog was rolled back to an older copy, or its newest events deleted)",
			v.n+1, top.Seal.Head, top.Where)}
	}
	return first
}

// ChainReport is what the seals in repositories say of one chain, read
// without the host that wrote it.
type ChainReport struct {
	Chain string `json:"chain"`
	Host  string `json:"host"`
	Seals int    `json:"seals"`
	// Covered are the ranges of events the seals vouch for, in order;
	// Bodies how many of those events they carry whole.
	Covered [][2]uint64 `json:"covered"`
	Bodies  int         `json:"bodies"`
	Break   *Break      `json:"break,omitempty"`
}

// VerifySeals checks the seals of every chain on their own: each holds
// together (UnmarshalSeal checked that), and seals that cover the same
// events agree on them and on the chain's hash. It is what a host without
// the catalog (a fresh one, an auditor's) can verify.
func VerifySeals(seals []Located) []ChainReport {
	byChain := map[string][]Located{}
	var order []string
	for _, l := range seals {
		if _, ok := byChain[l.Seal.Chain]; !ok {
			order = append(order, l.Seal.Chain)
		}
		byChain[l.Seal.Chain] = append(byChain[l.Seal.Chain], l)
	}
	slices.Sort(order)
	out := make([]ChainReport, 0, len(order))
	for _, chain := range order {
		out = append(out, verifyChainSeals(chain, byChain[chain]))
	}
	return out
}

func verifyChainSeals(chain string, seals []Located) ChainReport {
	rep := ChainReport{Chain: chain, Seals: len(seals)}
	type known struct {
		seq          uint64
		digest, hash Hash
		where        int
	}
	n := 0
	for _, l := range seals {
		n += int(l.Seal.Head-l.Seal.From) + 2
	}
	pts := make([]known, 0, n)
	for i, l := range seals {
		s := l.Seal
		if rep.Host == "" {
			rep.Host = s.Host
		}
		h := s.Prev
		if s.From > 1 {
			pts = append(pts, known{seq: s.From - 1, hash: s.Prev, where: i})
		}
		for j, d := range s.Digests() {
			h = Link(h, d)
			pts = append(pts, known{seq: s.From + uint64(j), digest: d, hash: h, where: i})
		}
		rep.Bodies += s.Bodies
	}
	byKnown := func(a, b known) int { return cmp.Compare(a.seq, b.seq) }
	if !slices.IsSortedFunc(pts, byKnown) {
		slices.SortFunc(pts, byKnown)
	}
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if a.seq != b.seq {
			continue
		}
		var zero Hash
		if a.hash != b.hash || a.digest != b.digest && a.digest != zero && b.digest != zero {
			if rep.Break == nil || a.seq < rep.Break.Seq {
				rep.Break = &Break{a.seq, fmt.Sprintf("%s and %s seal different chains up to it", seals[a.where].Where, seals[b.where].Where)}
			}
		}
	}
	iv := make([][2]uint64, 0, len(seals))
	for _, l := range seals {
		iv = append(iv, [2]uint64{l.Seal.From, l.Seal.Head})
	}
	slices.SortFunc(iv, func(a, b [2]uint64) int { return cmp.Compare(a[0], b[0]) })
	for _, r := range iv {
		if n := len(rep.Covered); n > 0 && r[0] <= rep.Covered[n-1][1]+1 {
			rep.Covered[n-1][1] = max(rep.Covered[n-1][1], r[1])
			continue
		}
		rep.Covered = append(rep.Covered, r)
	}
	return rep
}
