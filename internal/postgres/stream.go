package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/walstream"
)

// streamDir is where, inside an asset's WAL area, the streamed prefix of
// the segment in progress lives: stream/<segment>.<length, 8 hex>.partial.
// The length in the name makes every refresh a new object (objects are
// created once), and sorts the refreshes of one segment. These names are
// not PostgreSQL's: archive listing, verify and expire skip them.
const streamDir = "stream"

// StreamOptions is one asset's WAL stream.
type StreamOptions struct {
	Repo  *repo.Repository
	Asset string
	DSN   string
	// SpoolDir holds a completed segment for the moment PushWAL reads it.
	SpoolDir      string
	FlushInterval time.Duration
	Log           *slog.Logger
	// Stored, when not nil, receives each object stored (for the copies'
	// queues), as wal-push's.
	Stored func(name string, data []byte) error
}

// StreamConfig is the walstream configuration of an asset, with the
// repository as its sink.
func StreamConfig(o StreamOptions) walstream.Config {
	return walstream.Config{
		DSN:             o.DSN,
		Slot:            walstream.SlotName(o.Asset),
		ApplicationName: walstream.SlotName(o.Asset),
		FlushInterval:   o.FlushInterval,
		Sink:            &streamSink{o: o},
		Log:             o.Log,
	}
}

// streamSink stores what the stream receives exactly as wal-push would:
// completed segments and history files through PushWAL (same names,
// identity checks, refusal of other content, alternate names).
type streamSink struct {
	o       StreamOptions
	segSize uint64
}

func (s *streamSink) Identify(ctx context.Context, systemID string, segSize uint64) error {
	if err := ValidateWALSegmentSize(segSize); err != nil {
		return &walstream.PermanentError{Err: err}
	}
	id, err := LoadIdentity(ctx, s.o.Repo, s.o.Asset)
	switch {
	case errors.Is(err, storage.ErrNotFound) || errors.Is(err, repo.ErrUnauthentic):
		if err := ensureIdentity(ctx, s.o.Repo, s.o.Asset, Identity{SystemID: systemID, WALSegmentSize: segSize}); err != nil {
			return fmt.Errorf("WAL stream of %s: %w", s.o.Asset, err)
		}
	case err != nil:
		return fmt.Errorf("WAL stream of %s: %w", s.o.Asset, err)
	case id.SystemID != systemID:
		return &walstream.PermanentError{Err: fmt.Errorf("WAL stream of %s: the asset belongs to the cluster with system identifier %s, but the server is %s: %w",
			s.o.Asset, id.SystemID, systemID, ErrOtherCluster)}
	case id.WALSegmentSize != segSize:
		return &walstream.PermanentError{Err: fmt.Errorf("WAL stream of %s: the server's segments have %d bytes, the archive's %d", s.o.Asset, segSize, id.WALSegmentSize)}
	}
	s.segSize = segSize
	return nil
}

// push writes data to the spool under name and archives it with PushWAL,
// the one path into the WAL area.
func (s *streamSink) push(ctx context.Context, name string, data []byte) error {
	if err := os.MkdirAll(s.o.SpoolDir, 0o700); err != nil {
		return err
	}
	p := filepath.Join(s.o.SpoolDir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(p)
	_, err := PushWAL(ctx, s.o.Repo, s.o.Asset, p, s.o.Stored)
	return err
}

func (s *streamSink) Segment(ctx context.Context, tli uint32, segno uint64, data []byte) error {
	if err := s.push(ctx, SegmentName(tli, segno, s.segSize), data); err != nil {
		return err
	}
	// The full segment is stored: its partials, and any older, go.
	return s.prune(ctx, tli, segno+1, "")
}

func (s *streamSink) Partial(ctx context.Context, tli uint32, segno uint64, data []byte) error {
	rel := fmt.Sprintf("%s/%s.%08X%s", streamDir, SegmentName(tli, segno, s.segSize), len(data), partialSuffix)
	if _, err := s.o.Repo.PutNamed(ctx, walArea, s.o.Asset, rel, data, repo.CodecS2); err != nil {
		return fmt.Errorf("store %s: %w", rel, err)
	}
	return s.prune(ctx, tli, segno+1, rel)
}

func (s *streamSink) History(ctx context.Context, name string, content []byte) error {
	return s.push(ctx, name, content)
}

// prune deletes the streamed partials before segment below on timeline
// tli (and of earlier timelines), and older refreshes of its partial but
// keep. A failed delete only leaves an object superseded by a newer one.
func (s *streamSink) prune(ctx context.Context, tli uint32, below uint64, keep string) error {
	// Once the newer object is stored, removing what it supersedes must
	// not be cut short by a stop.
	ctx = context.WithoutCancel(ctx)
	parts, err := streamPartials(ctx, s.o.Repo, s.o.Asset, s.segSize)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if p.rel == keep {
			continue
		}
		if p.name.TLI < tli || p.name.TLI == tli && (p.name.SegNo < below || keep != "" && p.name.SegNo == below-1 && p.rel < keep) {
			if err := s.o.Repo.DeleteNamed(ctx, walArea, s.o.Asset, p.rel); err != nil && !errors.Is(err, storage.ErrNotFound) {
				s.o.log().Warn("superseded partial segment not deleted", "object", p.rel, "err", err)
			}
		}
	}
	return nil
}

func (o StreamOptions) log() *slog.Logger {
	if o.Log != nil {
		return o.Log
	}
	return slog.Default()
}

type streamPartial struct {
	rel    string
	name   WALName // the segment it is a prefix of
	length int
}

// streamPartials lists the streamed partial segments of an asset; names of
// any other shape are skipped.
func streamPartials(ctx context.Context, r *repo.Repository, asset string, segSize uint64) ([]streamPartial, error) {
	var out []streamPartial
	err := r.ListNamed(ctx, walArea, asset, streamDir+"/", func(rel string, _ int64) error {
		base := strings.TrimSuffix(path.Base(rel), partialSuffix)
		seg, hexLen, ok := strings.Cut(base, ".")
		if !ok || len(hexLen) != 8 || !strings.HasSuffix(rel, partialSuffix) {
			return nil
		}
		n, err := ParseWALFileName(seg, segSize)
		if err != nil || n.Kind != WALSegment {
			return nil
		}
		l, err := strconv.ParseUint(hexLen, 16, 32)
		if err != nil || l == 0 || l > segSize {
			return nil
		}
		out = append(out, streamPartial{rel: rel, name: n, length: int(l)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list streamed WAL of %s: %w", asset, err)
	}
	return out, nil
}

// FetchStreamedPartial is wal-fetch's answer for a segment the archive
// lacks (FetchWAL returned ErrWALNotFound): when the WAL stream holds a
// prefix of exactly that segment, and nothing newer exists (no later
// segment of its timeline, no later timeline), the segment is the end of
// the archive and recovery may be fed the prefix, zero-filled to the
// segment size, under the segment's name. PostgreSQL reads the zeros as
// the end of WAL, as with a streaming standby's partially received file.
// Anywhere else a partial would hide a gap, so it answers ErrWALNotFound.
func FetchStreamedPartial(ctx context.Context, r *repo.Repository, asset, name, dest string) error {
	ident, err := LoadIdentity(ctx, r, asset)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	segSize := ident.WALSegmentSize
	n, err := ParseWALFileName(name, segSize)
	if err != nil || n.Kind != WALSegment {
		return fmt.Errorf("wal-fetch %s: %w", name, ErrWALNotFound)
	}
	parts, err := streamPartials(ctx, r, asset, segSize)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	var best *streamPartial
	for i, p := range parts {
		if p.name.TLI == n.TLI && p.name.SegNo > n.SegNo {
			// The stream went past this segment: the full segment must
			// come from the archive, and its absence is a gap. (A later
			// timeline is judged below, as FetchWAL judges it.)
			return fmt.Errorf("wal-fetch %s: missing, but the stream holds later WAL (%s): %w", name, p.rel, ErrWALGap)
		}
		if p.name == n && (best == nil || p.length > best.length) {
			best = &parts[i]
		}
	}
	if best == nil {
		return fmt.Errorf("wal-fetch %s: %w", name, ErrWALNotFound)
	}
	later, err := laterTimeline(ctx, r, asset, n.TLI)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	if later != "" {
		// Recovery to latest follows the later timeline; the prefix of
		// this one is not its end.
		return fmt.Errorf("wal-fetch %s: %w", name, ErrWALNotFound)
	}
	data, err := r.GetNamed(ctx, walArea, asset, best.rel)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %s: %w", name, best.rel, err)
	}
	if len(data) != best.length {
		return fmt.Errorf("wal-fetch %s: %s holds %d bytes, its name says %d", name, best.rel, len(data), best.length)
	}
	hdr, err := ParseSegmentHeader(data)
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %s: %w", name, best.rel, err)
	}
	if err := hdr.CheckName(n); err != nil {
		return fmt.Errorf("wal-fetch %s: %s: %w", name, best.rel, err)
	}
	if strconv.FormatUint(hdr.SystemID, 10) != ident.SystemID {
		return fmt.Errorf("wal-fetch %s: %s comes from another cluster: %w", name, best.rel, ErrOtherCluster)
	}
	full := make([]byte, segSize)
	copy(full, data)
	dirInfo, err := os.Stat(filepath.Dir(dest))
	if err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	if err := writeFileAtomic(dest, full, 0o600, dirInfo); err != nil {
		return fmt.Errorf("wal-fetch %s: %w", name, err)
	}
	return nil
}

// laterTimeline returns the name of an archived history file of a
// timeline after tli, or "".
func laterTimeline(ctx context.Context, r *repo.Repository, asset string, tli uint32) (string, error) {
	var later string
	err := r.ListNamed(ctx, walArea, asset, "history/", func(rel string, _ int64) error {
		n, err := ParseWALFileName(path.Base(rel), MinWALSegmentSize)
		if err == nil && n.Kind == WALHistory && n.TLI > tli {
			later = path.Base(rel)
		}
		return nil
	})
	return later, err
}
