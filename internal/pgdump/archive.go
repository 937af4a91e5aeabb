package pgdump

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// The custom archive format of pg_dump -Fc, as pg_backup_archiver.c and
// pg_backup_custom.c write it: a header, the table of contents (TOC), then
// one data block per TOC entry that has data. Integers are a sign byte and
// intSize little-endian bytes; strings are an integer length (-1 for NULL)
// and the bytes. A data block is a type byte, the entry's dump ID and a run
// of length-prefixed chunks ended by a zero length; a large-object block
// holds (OID, chunks) pairs ended by a zero OID. Nothing follows the last
// block, so an archive is complete exactly when every entry the TOC
// promises data for has its whole block and the stream then ends.
const (
	archiveMagic = "PGDMP"
	formatCustom = 1

	blockData  = 1
	blockBlobs = 3

	offsetPosNotSet = 1
	offsetPosSet    = 2
	offsetNoData    = 3
)

// Archive versions whose layout checkArchive knows: 1.12 (PostgreSQL 9.0)
// to 1.16 (PostgreSQL 17).
const (
	minArchiveVersion = 1<<16 | 12<<8
	maxArchiveVersion = 1<<16 | 16<<8
)

func archVersion(major, minor, rev byte) int { return int(major)<<16 | int(minor)<<8 | int(rev) }

// Archive is what checkArchive learned from a custom-format archive.
type Archive struct {
	Version       string // format version, e.g. "1.14"
	DumpVersion   string // the pg_dump that wrote it, e.g. "15.13 (Debian 15.13-1.pgdg120+1)"
	ServerVersion string // the server it dumped
	Database      string
	Compression   int   // the compression level (before 1.15) or algorithm (from 1.15); 0 is none
	Entries       int   // TOC entries
	DataBlocks    int   // data and large-object blocks
	DataBytes     int64 // bytes of all data blocks
	LargestData   int64 // bytes of the largest data block (one table's rows)
	TOCEnd        int64 // where the table of contents ends and the data starts
	Bytes         int64 // archive size
	// Complete is false when the format is newer than this code knows:
	// then only the header was checked and pg_dump's exit status decides.
	Complete bool
}

// ErrIncomplete marks an archive that ends before all its data, or
// holds something a finished archive cannot.
var ErrIncomplete = errors.New("not a complete pg_dump archive")

// archiveReader reads the archive's primitives, counting bytes for
// messages.
type archiveReader struct {
	r       *bufio.Reader
	pos     int64
	intSize int
	offSize int
	version int
}

func (a *archiveReader) fail(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the archive ends at byte %d, inside %s", ErrIncomplete, a.pos, what)
	}
	if errors.Is(err, ErrIncomplete) {
		return err
	}
	return fmt.Errorf("read archive at byte %d (%s): %w", a.pos, what, err)
}

func (a *archiveReader) byte(what string) (byte, error) {
	b, err := a.r.ReadByte()
	if err != nil {
		return 0, a.fail(what, err)
	}
	a.pos++
	return b, nil
}

func (a *archiveReader) int(what string) (int64, error) {
	sign, err := a.byte(what)
	if err != nil {
		return 0, err
	}
	var v int64
	for i := 0; i < a.intSize; i++ {
		b, err := a.byte(what)
		if err != nil {
			return 0, err
		}
		v |= int64(b) << (8 * i)
	}
	if sign != 0 {
		v = -v
	}
	return v, nil
}

func (a *archiveReader) skip(n int64, what string) error {
	for n > 0 {
		step := int(min(n, 1<<20))
		d, err := a.r.Discard(step)
		a.pos += int64(d)
		n -= int64(d)
		if err != nil {
			return a.fail(what, err)
		}
	}
	return nil
}

// str reads a string, keeping at most keep bytes of it (0: none).
func (a *archiveReader) str(what string, keep int) (string, error) {
	n, err := a.int(what)
	if err != nil || n <= 0 {
		return "", err
	}
	if n > int64(keep) {
		return "", a.skip(n, what)
	}
	buf := make([]byte, n)
	m, err := io.ReadFull(a.r, buf)
	a.pos += int64(m)
	if err != nil {
		return "", a.fail(what, err)
	}
	return string(buf), nil
}

// chunks skips a run of length-prefixed chunks up to its zero length.
func (a *archiveReader) chunks(what string) error {
	for {
		n, err := a.int(what)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if n < 0 {
			return fmt.Errorf("%w: negative chunk length %d at byte %d in %s", ErrIncomplete, n, a.pos, what)
		}
		if err := a.skip(n, what); err != nil {
			return err
		}
	}
}

// checkArchive reads a custom-format archive to its end and says whether
// it is whole. It holds no more than the TOC's dump IDs in memory.
func checkArchive(r io.Reader) (*Archive, error) {
	a := &archiveReader{r: bufio.NewReaderSize(r, 256<<10)}
	out := &Archive{}
	defer func() { out.Bytes = a.pos }()
	magic := make([]byte, len(archiveMagic))
	n, err := io.ReadFull(a.r, magic)
	a.pos += int64(n)
	if err != nil {
		return out, a.fail("the header", err)
	}
	if string(magic) != archiveMagic {
		return out, fmt.Errorf("%w: no PGDMP header (is this a custom-format archive?)", ErrIncomplete)
	}
	var vb [3]byte
	for i := range vb {
		if vb[i], err = a.byte("the header"); err != nil {
			return out, err
		}
	}
	a.version = archVersion(vb[0], vb[1], vb[2])
	out.Version = fmt.Sprintf("%d.%d", vb[0], vb[1])
	if a.version < minArchiveVersion {
		return out, fmt.Errorf("archive format %s is older than this check knows (1.12)", out.Version)
	}
	size, err := a.byte("the header")
	if err != nil {
		return out, err
	}
	off, err := a.byte("the header")
	if err != nil {
		return out, err
	}
	if size < 1 || size > 8 || off < 1 || off > 8 {
		return out, fmt.Errorf("%w: integer size %d or offset size %d out of range", ErrIncomplete, size, off)
	}
	a.intSize, a.offSize = int(size), int(off)
	format, err := a.byte("the header")
	if err != nil {
		return out, err
	}
	if format != formatCustom {
		return out, fmt.Errorf("%w: archive format %d is not custom (%d)", ErrIncomplete, format, formatCustom)
	}
	if a.version > maxArchiveVersion {
		// A newer pg_dump: its layout may have grown fields this code
		// would misread. The header was right; pg_dump's exit status and
		// stderr decide. The rest is drained so the writer is not stuck.
		_, err := io.Copy(io.Discard, a.r)
		return out, err
	}
	if a.version >= archVersion(1, 15, 0) {
		c, err := a.byte("the header")
		out.Compression = int(c)
		if err != nil {
			return out, err
		}
	} else {
		c, err := a.int("the header")
		out.Compression = int(c)
		if err != nil {
			return out, err
		}
	}
	for i := 0; i < 7; i++ { // creation time: sec, min, hour, mday, mon, year, isdst
		if _, err := a.int("the header"); err != nil {
			return out, err
		}
	}
	if out.Database, err = a.str("the header", 1024); err != nil {
		return out, err
	}
	if out.ServerVersion, err = a.str("the header", 1024); err != nil {
		return out, err
	}
	if out.DumpVersion, err = a.str("the header", 1024); err != nil {
		return out, err
	}
	pending, err := a.toc(out)
	if err != nil {
		return out, err
	}
	out.TOCEnd = a.pos
	return out, a.blocks(out, pending)
}

// toc reads the table of contents and returns the dump IDs of the entries
// whose data blocks must follow.
func (a *archiveReader) toc(out *Archive) (map[int64]bool, error) {
	count, err := a.int("the table of contents")
	if err != nil {
		return nil, err
	}
	if count < 0 {
		return nil, fmt.Errorf("%w: negative TOC entry count", ErrIncomplete)
	}
	pending := map[int64]bool{}
	for i := int64(0); i < count; i++ {
		what := fmt.Sprintf("TOC entry %d of %d", i+1, count)
		id, err := a.int(what)
		if err != nil {
			return nil, err
		}
		if _, err := a.int(what); err != nil { // had a data dumper
			return nil, err
		}
		// table OID, OID, tag, description
		for range 4 {
			if _, err := a.str(what, 0); err != nil {
				return nil, err
			}
		}
		if _, err := a.int(what); err != nil { // section
			return nil, err
		}
		// definition, drop statement, COPY statement, namespace, tablespace
		for range 5 {
			if _, err := a.str(what, 0); err != nil {
				return nil, err
			}
		}
		if a.version >= archVersion(1, 14, 0) {
			if _, err := a.str(what, 0); err != nil { // table access method
				return nil, err
			}
		}
		if a.version >= archVersion(1, 16, 0) {
			if _, err := a.int(what); err != nil { // relkind
				return nil, err
			}
		}
		// owner, "with OIDs" (always "false")
		for range 2 {
			if _, err := a.str(what, 0); err != nil {
				return nil, err
			}
		}
		for { // dependencies, ended by a NULL string
			n, err := a.int(what)
			if err != nil {
				return nil, err
			}
			if n < 0 {
				break
			}
			if err := a.skip(n, what); err != nil {
				return nil, err
			}
		}
		state, err := a.byte(what)
		if err != nil {
			return nil, err
		}
		if err := a.skip(int64(a.offSize), what); err != nil {
			return nil, err
		}
		switch state {
		case offsetPosNotSet, offsetPosSet:
			if pending[id] {
				return nil, fmt.Errorf("%w: dump ID %d appears twice in the TOC", ErrIncomplete, id)
			}
			pending[id] = true
		case offsetNoData:
		default:
			return nil, fmt.Errorf("%w: unknown data state %d in %s", ErrIncomplete, state, what)
		}
		out.Entries++
	}
	return pending, nil
}

// blocks reads the data blocks to the end of the stream.
func (a *archiveReader) blocks(out *Archive, pending map[int64]bool) error {
	for {
		typ, err := a.r.ReadByte()
		if errors.Is(err, io.EOF) {
			if len(pending) > 0 {
				return fmt.Errorf("%w: the archive ends at byte %d with the data of %d of %d entries missing",
					ErrIncomplete, a.pos, len(pending), len(pending)+out.DataBlocks)
			}
			out.Complete = true
			return nil
		}
		if err != nil {
			return a.fail("a data block", err)
		}
		a.pos++
		blockStart := a.pos - 1
		id, err := a.int("a data block header")
		if err != nil {
			return err
		}
		if !pending[id] {
			return fmt.Errorf("%w: data block for dump ID %d at byte %d, which the TOC does not expect", ErrIncomplete, id, a.pos)
		}
		what := fmt.Sprintf("the data of dump ID %d", id)
		switch typ {
		case blockData:
			if err := a.chunks(what); err != nil {
				return err
			}
		case blockBlobs:
			for {
				oid, err := a.int(what)
				if err != nil {
					return err
				}
				if oid == 0 {
					break
				}
				if err := a.chunks(what); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("%w: unknown block type %d at byte %d", ErrIncomplete, typ, a.pos)
		}
		delete(pending, id)
		out.DataBlocks++
		out.DataBytes += a.pos - blockStart
		out.LargestData = max(out.LargestData, a.pos-blockStart)
	}
}
