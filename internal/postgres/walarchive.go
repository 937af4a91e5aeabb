package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/hugemem"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// ErrWALNotFound means a WAL file is truly absent from the archive: the one
// answer after which PostgreSQL may end recovery.
var ErrWALNotFound = errors.New("WAL file not in the archive")

// ErrWALGap means a segment is missing although later segments of its
// timeline are archived: ending recovery there would silently lose the
// rest, so recovery must stop instead.
var ErrWALGap = errors.New("WAL segment missing inside the archived range")

const walArea = "wal"

// WALPrefix is the object name prefix of an asset's WAL area, for
// comparing a copy with its primary.
func WALPrefix(asset string) string { return walArea + "/" + asset + "/" }

// NewestWAL returns the name of the newest archived WAL segment of an
// asset and when the repository stored it; "" when none is archived.
// Segment names grow with timeline and position, so the newest is the
// greatest name. Listing through the repository also notes the names a
// squatter holds (a file stored under its alternate name), and the
// identity is listed too for the same reason: status and check call this,
// and report what was noted.
func NewestWAL(ctx context.Context, r *repo.Repository, asset string) (string, time.Time, error) {
	var name string
	var at time.Time
	err := r.ListNamedInfo(ctx, walArea, asset, "", func(rel string, oi storage.ObjectInfo) error {
		base := path.Base(rel)
		if isSegmentFileName(base) && base > name {
			name, at = base, oi.ModTime
		}
		return nil
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("list WAL of %s: %w", asset, err)
	}
	if err := r.ListNamed(ctx, "meta", asset, "identity", func(string, int64) error { return nil }); err != nil {
		return "", time.Time{}, fmt.Errorf("list identity of %s: %w", asset, err)
	}
	return name, at, nil
}

// walRel is where a WAL file lives in an asset's WAL area: segments,
// partial segments and backup history files under their timeline,
// timeline history files apart.
func walRel(n WALName) string {
	if n.Kind == WALHistory {
		return "history/" + n.String()
	}
	return fmt.Sprintf("%08X/%s", n.TLI, n.String())
}

// segSizeFor returns the WAL segment size recorded for the asset, or the
// fallback when nothing was recorded yet.
func segSizeFor(ctx context.Context, r *repo.Repository, asset string, fallback uint64) (uint64, *Identity, error) {
	// An identity, once stored, is never replaced: serve reads it once
	// rather than for every segment handed to it.
	v, err := r.Memo("postgres identity\x00"+asset, func() (any, error) { return LoadIdentity(ctx, r, asset) })
	// An identity that does not authenticate, with no genuine one under
	// its alternate name, was planted before the first genuine write:
	// there is none yet, and the write goes to the alternate.
	if errors.Is(err, storage.ErrNotFound) || errors.Is(err, repo.ErrUnauthentic) {
		return fallback, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	id := v.(*Identity)
	return id.WALSegmentSize, id, nil
}

// PushResult tells what PushWAL did.
type PushResult struct {
	Name    string
	Bytes   int
	Existed bool // the archive already held this file with identical content
	// Alternate is the storage name the file went to because its own name
	// was taken by an object that is not authentic (a squatter); "" when
	// it went to its own name. wal-fetch finds it there.
	Alternate string
}

// PushWAL archives the WAL file at path (archive_command's %p). It returns
// nil only once the file is durably in the repository. A file archived
// before with identical content succeeds again; with different content it
// fails and the archived file stays as it was. stored, when not nil, is
// called with the object's name and stored bytes (nil when it existed) and
// its error returned: wal-push queues the object for the copies there.
func PushWAL(ctx context.Context, r *repo.Repository, asset, path string, stored func(name string, data []byte) error) (PushResult, error) {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return PushResult{Name: name}, fmt.Errorf("wal-push %s: %w", name, err)
	}
	defer f.Close()
	return PushWALFile(ctx, r, asset, name, f, stored)
}

// PushWALFile is PushWAL of a WAL file called name that is already open
// (lifeboat serve gets the archiver's descriptor over its socket). It
// reads f from its start with ReadAt, so f's offset does not matter.
func PushWALFile(ctx context.Context, r *repo.Repository, asset, name string, f *os.File, stored func(name string, data []byte) error) (PushResult, error) {
	res := PushResult{Name: name}
	data, release, err := readWALFile(f)
	if err != nil {
		return res, fmt.Errorf("wal-push %s: %w", name, err)
	}
	defer release()
	res.Bytes = len(data)
	segSize, ident, err := segSizeFor(ctx, r, asset, 0)
	if err != nil {
		return res, fmt.Errorf("wal-push %s: %w", name, err)
	}
	var hdr SegmentHeader
	if isSegmentFileName(name) {
		// Segments carry their cluster's identity in their first page.
		if hdr, err = ParseSegmentHeader(data); err != nil {
			return res, fmt.Errorf("wal-push %s: %w", name, err)
		}
		if segSize == 0 {
			segSize = uint64(hdr.SegSize)
		}
	}
	if segSize == 0 {
		segSize = 16 << 20
	}
	n, err := ParseWALFileName(name, segSize)
	if err != nil {
		return res, fmt.Errorf("wal-push: %w", err)
	}
	if n.Kind == WALSegment || n.Kind == WALPartial {
		if err := hdr.CheckName(n); err != nil {
			return res, fmt.Errorf("wal-push: %w", err)
		}
		if uint64(len(data)) != segSize {
			return res, fmt.Errorf("wal-push %s: %d bytes, segments of this cluster have %d", name, len(data), segSize)
		}
		sysid := strconv.FormatUint(hdr.SystemID, 10)
		if ident == nil {
			if err := ensureIdentity(ctx, r, asset, Identity{SystemID: sysid, WALSegmentSize: segSize}); err != nil {
				return res, fmt.Errorf("wal-push %s: %w", name, err)
			}
		} else if ident.SystemID != sysid {
			return res, fmt.Errorf("wal-push %s: asset %s belongs to the cluster with system identifier %s, but this segment comes from %s: %w",
				name, asset, ident.SystemID, sysid, ErrOtherCluster)
		}
	}
	// S2 rather than zstd: archive_command latency matters more than the
	// last third of compression.
	then := func(name string, b []byte) error {
		// The name is valid here: PutNamedThen checked it before storing.
		if name != r.NamedObject(walArea, asset, walRel(n)) {
			res.Alternate = name
		}
		if stored != nil {
			return stored(name, b)
		}
		return nil
	}
	existed, err := r.PutNamedThen(ctx, walArea, asset, walRel(n), data, repo.CodecS2, then)
	if errors.Is(err, repo.ErrConflict) {
		return res, fmt.Errorf("wal-push %s: already archived with different content; the archived file is kept (is another cluster archiving into asset %s?): %w", name, asset, err)
	}
	if err != nil {
		return res, fmt.Errorf("wal-push %s: %w", name, err)
	}
	res.Existed = existed
	return res, nil
}

// readWALFile reads a WAL file into a huge-page buffer. A fresh heap
// buffer, or a memory map of the page cache, would make this short-lived
// process fault in 4096 pages, which costs more than compressing them.
func readWALFile(f *os.File) ([]byte, func(), error) {
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if st.Size() > MaxWALSegmentSize {
		return nil, nil, fmt.Errorf("%d bytes: larger than any WAL segment", st.Size())
	}
	if !st.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	buf, release := hugemem.Scratch(int(st.Size()))
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, st.Size()), buf); err != nil {
		release()
		return nil, nil, err
	}
	return buf, release, nil
}

// isSegmentFileName tells segment and partial segment names, whose
// content starts with a WAL page header, from history and backup files.
func isSegmentFileName(name string) bool {
	if len(name) != walSegNameLen && len(name) != walSegNameLen+len(partialSuffix) {
		return false
	}
	if len(name) > walSegNameLen && name[walSegNameLen:] != partialSuffix {
		return false
	}
	for _, c := range name[:walSegNameLen] {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// FetchWAL writes the archived WAL file name (restore_command's %f) to
// dest (%p), through a temporary file and a rename so PostgreSQL never
// reads half a file. It returns an error matching ErrWALNotFound only when
// the file is truly absent; every other error must stop recovery.
func FetchWAL(ctx context.Context, r *repo.Repository, asset, name, dest string) error {
	segSize, ident, err := segSizeFor(ctx, r, asset, 0)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	if ident == nil {
		return fmt.Errorf("wal-fetch %s: asset %s has no archived WAL in %s (wrong repository or asset?)", name, asset, r.Location())
	}
	n, err := ParseWALFileName(name, segSize)
	if err != nil {
		return fmt.Errorf("wal-fetch: %w", err)
	}
	data, err := r.GetNamed(ctx, walArea, asset, walRel(n))
	if errors.Is(err, storage.ErrNotFound) {
		if n.Kind == WALSegment {
			later, lerr := laterSegment(ctx, r, asset, n)
			if lerr != nil {
				return fmt.Errorf("wal-fetch %s: %w", name, lerr)
			}
			if later != "" {
				return fmt.Errorf("wal-fetch %s: missing, but %s of the same timeline is archived: %w", name, later, ErrWALGap)
			}
		}
		return fmt.Errorf("wal-fetch %s: %w", name, ErrWALNotFound)
	}
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	dirInfo, err := os.Stat(filepath.Dir(dest))
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	if err := writeFileAtomic(dest, data, 0o600, dirInfo); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return nil
}

// laterSegment returns the name of an archived segment of n's timeline
// after n, or "".
func laterSegment(ctx context.Context, r *repo.Repository, asset string, n WALName) (string, error) {
	var later string
	prefix := fmt.Sprintf("%08X/", n.TLI)
	errStop := errors.New("stop")
	err := r.ListNamed(ctx, walArea, asset, prefix, func(rel string, _ int64) error {
		base := rel[len(prefix):]
		if len(base) == walSegNameLen && base > n.String() {
			later = base
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", err
	}
	return later, nil
}

// CheckWALRange verifies that every segment from the one holding start to
// the one holding the byte before stop is archived on timeline tli.
func CheckWALRange(ctx context.Context, r *repo.Repository, asset string, tli uint32, start, stop lifeboat.LSN, segSize uint64) error {
	last := SegmentForLSN(stop, segSize)
	if stop > start && uint64(stop)%segSize == 0 {
		last--
	}
	for seg := SegmentForLSN(start, segSize); seg <= last; seg++ {
		n := WALName{Kind: WALSegment, TLI: tli, SegNo: seg, SegSize: segSize}
		ok, err := r.HasNamed(ctx, walArea, asset, walRel(n))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("WAL segment %s (needed from %s to %s) is not in %s: %w", n, start, stop, r.Location(), ErrWALNotFound)
		}
	}
	return nil
}
