// Package chunker cuts a byte stream into content-defined chunks (FastCDC,
// with a gear hash and normalised chunking), so that an insertion or a
// change in one place of a stream moves the cut points near it only: the
// rest of a nightly dump, a database file or an archive cuts into the same
// chunks as the night before and is stored once.
//
// The gear table is derived from a seed. A repository seeds it from its
// key, so chunk sizes, which the repository shows, say nothing about
// content to someone without the key.
package chunker

import (
	"encoding/binary"
	"errors"
	"io"
)

// Sizes of the chunks: never below Min, Avg on average, never above Max.
const (
	Min = 4 << 10
	Avg = 16 << 10
	Max = 64 << 10
)

// Normalised chunking: a stricter mask before the average size and a
// looser one after it pull chunk sizes towards the average.
const (
	avgBits = 14 // log2(Avg)
	maskS   = uint64(1<<(avgBits+2)-1) << (64 - avgBits - 2)
	maskL   = uint64(1<<(avgBits-2)-1) << (64 - avgBits + 2)
)

// Table is a gear table: one random 64-bit value per byte value.
type Table [256]uint64

// NewTable derives a gear table from seed (splitmix64 over the seed's
// words), the same table for the same seed.
func NewTable(seed []byte) *Table {
	var s uint64 = 0x9e3779b97f4a7c15
	for len(seed) > 0 {
		var w [8]byte
		n := copy(w[:], seed)
		seed = seed[n:]
		s ^= binary.LittleEndian.Uint64(w[:])
		s = mix(s)
	}
	var t Table
	for i := range t {
		s += 0x9e3779b97f4a7c15
		t[i] = mix(s)
	}
	return &t
}

func mix(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Cut returns the length of the first chunk of data, which holds the
// stream's next bytes; eof says data runs to the end of the stream.
// Without eof, data must hold at least Max bytes.
func (t *Table) Cut(data []byte, eof bool) int {
	n := len(data)
	if n <= Min {
		return n
	}
	n = min(n, Max)
	avg := min(n, Avg)
	var fp uint64
	i := Min
	for ; i < avg; i++ {
		fp = fp<<1 + t[data[i]]
		if fp&maskS == 0 {
			return i + 1
		}
	}
	for ; i < n; i++ {
		fp = fp<<1 + t[data[i]]
		if fp&maskL == 0 {
			return i + 1
		}
	}
	return n
}

// Chunker reads a stream chunk by chunk.
type Chunker struct {
	t    *Table
	r    io.Reader
	buf  []byte
	off  int // start of unread data in buf
	end  int // end of data in buf
	eof  bool
	read int64
}

// New returns a chunker of r.
func New(t *Table, r io.Reader) *Chunker {
	return &Chunker{t: t, r: r, buf: make([]byte, 4*Max)}
}

// Reset makes c a chunker of r, reusing its buffer: a tree of many small
// files then costs no fresh buffer per file.
func (c *Chunker) Reset(r io.Reader) {
	*c = Chunker{t: c.t, r: r, buf: c.buf}
}

// Next returns the next chunk, valid until the next call, or io.EOF after
// the last.
func (c *Chunker) Next() ([]byte, error) {
	if c.end-c.off < Max && !c.eof {
		if c.off > 0 {
			c.end = copy(c.buf, c.buf[c.off:c.end])
			c.off = 0
		}
		for c.end < len(c.buf) && !c.eof {
			n, err := c.r.Read(c.buf[c.end:])
			c.end += n
			c.read += int64(n)
			if errors.Is(err, io.EOF) {
				c.eof = true
			} else if err != nil {
				return nil, err
			}
		}
	}
	if c.off == c.end {
		return nil, io.EOF
	}
	n := c.t.Cut(c.buf[c.off:c.end], c.eof)
	chunk := c.buf[c.off : c.off+n]
	c.off += n
	return chunk, nil
}
