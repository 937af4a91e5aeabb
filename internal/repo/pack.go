package repo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// BlobType tells data blobs (file content) from tree blobs (file lists).
type BlobType uint8

// Blob types.
const (
	DataBlob BlobType = 1
	TreeBlob BlobType = 2
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case TreeBlob:
		return "tree"
	}
	return fmt.Sprintf("blobtype(%d)", uint8(t))
}

// frameFlagZstd marks a frame whose plaintext is zstd-compressed.
const frameFlagZstd = 1

// blobEntry is one blob inside a frame: its offset is the sum of the
// lengths before it, so it is not stored.
type blobEntry struct {
	Type BlobType
	ID   ID
	Len  uint32
}

// frameHeader describes one sealed frame of a pack.
type frameHeader struct {
	SealedLen uint32 // bytes in the pack: nonce, ciphertext, tag
	RawLen    uint32 // bytes after opening and decompressing
	Flags     uint8
	Blobs     []blobEntry
}

// packHeaderMagic starts the plaintext of a pack header.
var packHeaderMagic = []byte("LBPH\x01")

// appendFrames encodes frame headers (the body shared by pack headers and
// index entries), blob IDs idLen bytes long.
func appendFrames(b []byte, frames []frameHeader, idLen int) []byte {
	b = binary.AppendUvarint(b, uint64(len(frames)))
	for _, f := range frames {
		b = binary.AppendUvarint(b, uint64(f.SealedLen))
		b = binary.AppendUvarint(b, uint64(f.RawLen))
		b = append(b, f.Flags)
		b = binary.AppendUvarint(b, uint64(len(f.Blobs)))
		for _, e := range f.Blobs {
			b = append(b, byte(e.Type))
			b = append(b, e.ID[:idLen]...)
			b = binary.AppendUvarint(b, uint64(e.Len))
		}
	}
	return b
}

// decoder reads the binary encodings with bounds checks; every length it
// reads is checked against what remains, so damaged input is an error and
// never a panic or a huge allocation.
type decoder struct {
	b     []byte
	err   error
	idLen int // stored length of blob IDs: 32, or 16 in a compact repository
}

var errTruncated = errors.New("truncated")

func (d *decoder) uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errTruncated
		return 0
	}
	if v > max {
		d.err = fmt.Errorf("value %d out of range (max %d)", v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b) {
		d.err = errTruncated
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	v := d.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

// id reads a pack or object ID, always 32 bytes.
func (d *decoder) id() ID {
	var id ID
	copy(id[:], d.bytes(len(id)))
	return id
}

// blobID reads a blob ID of the repository's length.
func (d *decoder) blobID() ID {
	var id ID
	copy(id[:], d.bytes(d.idLen))
	if d.err == nil && id.IsZero() {
		// No writer produces it (crypter.blobID), and a zero compact ID
		// would read back as a 32-byte one.
		d.err = errors.New("zero blob ID")
	}
	return id
}

const maxFrameBytes = 1 << 30

func (d *decoder) frames() []frameHeader {
	// Each frame takes at least 4 bytes and each blob at least idLen+2,
	// which bounds the counts by the input length.
	n := d.uvarint(uint64(len(d.b) / 4))
	frames := make([]frameHeader, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		f := frameHeader{
			SealedLen: uint32(d.uvarint(maxFrameBytes)),
			RawLen:    uint32(d.uvarint(maxFrameBytes)),
			Flags:     d.byte(),
		}
		if d.err == nil && f.Flags&^(frameFlagZstd|frameFlagSealed) != 0 {
			d.err = fmt.Errorf("frame %d: unknown flags %#x", i, f.Flags)
		}
		nb := d.uvarint(uint64(len(d.b) / (d.idLen + 2)))
		f.Blobs = make([]blobEntry, 0, nb)
		var sum uint64
		for j := uint64(0); j < nb && d.err == nil; j++ {
			e := blobEntry{Type: BlobType(d.byte()), ID: d.blobID(), Len: uint32(d.uvarint(maxFrameBytes))}
			if d.err == nil && e.Type != DataBlob && e.Type != TreeBlob {
				d.err = fmt.Errorf("frame %d: unknown blob type %d", i, e.Type)
			}
			sum += uint64(e.Len)
			f.Blobs = append(f.Blobs, e)
		}
		if d.err == nil && sum != uint64(f.RawLen) {
			d.err = fmt.Errorf("frame %d: blob lengths add to %d, frame holds %d", i, sum, f.RawLen)
		}
		frames = append(frames, f)
	}
	return frames
}

// encodePackHeader is the plaintext of a pack's trailing header.
func encodePackHeader(frames []frameHeader, idLen int) []byte {
	return appendFrames(append([]byte(nil), packHeaderMagic...), frames, idLen)
}

func decodePackHeader(b []byte, idLen int) ([]frameHeader, error) {
	if !bytes.HasPrefix(b, packHeaderMagic) {
		return nil, fmt.Errorf("pack header: bad magic: %w", ErrCorrupt)
	}
	d := &decoder{b: b[len(packHeaderMagic):], idLen: idLen}
	frames := d.frames()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("pack header: %v: %w", d.err, ErrCorrupt)
	}
	return frames, nil
}

// packEntry is what an index records of one pack.
type packEntry struct {
	ID     ID
	Frames []frameHeader
}

var indexMagic = []byte("LBIX\x01")

func encodeIndex(packs []packEntry, idLen int) []byte {
	b := append([]byte(nil), indexMagic...)
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = appendFrames(b, p.Frames, idLen)
	}
	return b
}

func decodeIndex(b []byte, idLen int) ([]packEntry, error) {
	if !bytes.HasPrefix(b, indexMagic) {
		return nil, fmt.Errorf("index: bad magic: %w", ErrCorrupt)
	}
	d := &decoder{b: b[len(indexMagic):], idLen: idLen}
	n := d.uvarint(uint64(len(d.b) / 33))
	packs := make([]packEntry, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		packs = append(packs, packEntry{ID: d.id(), Frames: d.frames()})
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return nil, fmt.Errorf("index: %v: %w", d.err, ErrCorrupt)
	}
	return packs, nil
}

// packName is where a pack lives: data/<first two hex digits>/<id>, so no
// directory of a local repository grows past a few thousand entries.
func packName(id ID) string {
	s := id.String()
	return "data/" + s[:2] + "/" + s
}
