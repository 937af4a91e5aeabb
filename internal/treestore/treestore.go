// Package treestore records a tree of files and streams as one snapshot:
// the part the asset kinds other than a PostgreSQL cluster share (logical
// dumps, SQLite, files, git). Contents are cut into content-defined chunks
// (internal/chunker), so what did not change since the last snapshot, even
// where bytes before it moved, is stored once.
//
// A session holds the asset's lock from Begin to Commit or Abort, writes
// through a view that skips data an expire condemned, and records the
// snapshot only in Commit, after all its data is durable: a source that
// fails or is interrupted half-way leaves no snapshot behind. The context
// given to Begin bounds the session: its uploads and the refreshes of its
// lock run under it, so cancelling it stops them, and Abort then returns
// at once and still releases the lock.
package treestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/chunker"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Options describe the snapshot a session writes.
type Options struct {
	Asset string
	Kind  string // the asset kind, recorded in the snapshot
	// LockWait is how long to wait for another backup of the asset; 0
	// refuses at once.
	LockWait time.Duration
	Log      *slog.Logger
}

// Session writes one snapshot.
type Session struct {
	r     *repo.Repository
	opts  Options
	lock  *repo.Lock
	view  *repo.WriteView
	w     *repo.Writer
	sink  *repo.Sink
	tw    *repo.TreeWriter
	table *chunker.Table
	// chunker is reused from file to file; Add is not called concurrently.
	chunker *chunker.Chunker
	start   time.Time
	parent  *repo.ID
	stats   repo.SnapshotStats
	closed  bool
}

// Begin takes the asset's lock and opens a session whose background work
// (uploads, lock refreshes) runs under ctx.
func Begin(ctx context.Context, r *repo.Repository, opts Options) (*Session, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	lock, err := r.Lock(ctx, "asset/"+opts.Asset, "backup of "+opts.Asset, true, opts.LockWait)
	if err != nil {
		return nil, err
	}
	// Every blob is kept in view: a stream's chunks are found again
	// wherever they were stored before, not only in the last snapshot.
	view, err := r.OpenWriteView(ctx, nil)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	w := r.NewWriterContext(ctx, view.Index)
	return &Session{r: r, opts: opts, lock: lock, view: view, w: w, sink: w.NewSink(), tw: w.NewTreeWriter(),
		table: chunker.NewTable(r.ChunkerSeed()), start: r.Clock().UTC()}, nil
}

// Add records one node; nodes must come in strictly increasing path
// order, parents before their children. For a file, content is read to
// its end and stored, and n.Size and n.Blocks are set from what was read;
// directories and symlinks have no content (nil).
func (s *Session) Add(ctx context.Context, n *repo.Node, content io.Reader) error {
	var next func() ([]byte, error)
	if content != nil {
		if s.chunker == nil {
			s.chunker = chunker.New(s.table, content)
		} else {
			s.chunker.Reset(content)
		}
		next = s.chunker.Next
	}
	return s.add(ctx, n, next)
}

// AddFixed is Add for content made of fixed-size pages that change in
// place, such as a SQLite database: it is cut every size bytes instead of
// at content-defined points, so a changed page costs one block, not the
// chunk around it, and a page that moved is still found.
func (s *Session) AddFixed(ctx context.Context, n *repo.Node, content io.Reader, size int) error {
	var next func() ([]byte, error)
	if content != nil {
		buf := make([]byte, size)
		next = func() ([]byte, error) {
			k, err := io.ReadFull(content, buf)
			if k > 0 && (err == nil || errors.Is(err, io.ErrUnexpectedEOF)) {
				return buf[:k], nil
			}
			return nil, err
		}
	}
	return s.add(ctx, n, next)
}

// add stores a node; for a file, next yields its content piece by piece
// and io.EOF at the end.
func (s *Session) add(ctx context.Context, n *repo.Node, next func() ([]byte, error)) error {
	if n.Type == repo.NodeFile {
		if next == nil {
			return fmt.Errorf("%s: a file needs content", n.Path)
		}
		n.Blocks, n.Size = n.Blocks[:0], 0
		for {
			chunk, err := next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", n.Path, err)
			}
			id, _, err := s.sink.Save(ctx, repo.DataBlob, chunk)
			if err != nil {
				return fmt.Errorf("store %s: %w", n.Path, err)
			}
			n.Blocks = append(n.Blocks, repo.Block{ID: id, Len: uint32(len(chunk))})
			n.Size += int64(len(chunk))
		}
		s.stats.Files++
		s.stats.BytesRead += n.Size
		s.stats.BytesTotal += n.Size
	}
	return s.tw.Add(ctx, n)
}

// Commit stores the tree and records the snapshot, with extra (kind
// specific details, marshalled to JSON; nil for none) and typ ("full" for
// a whole copy of the source). Nothing is recorded unless it returns nil.
func (s *Session) Commit(ctx context.Context, typ string, extra any) (snap *repo.Snapshot, err error) {
	if s.closed {
		return nil, errors.New("session already closed")
	}
	defer func() {
		if err != nil {
			s.w.Abort()
		}
		s.release()
	}()
	if err := s.sink.Flush(ctx); err != nil {
		return nil, err
	}
	tree, count, err := s.tw.Close(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.w.Finish(ctx); err != nil {
		return nil, fmt.Errorf("store %s data: %w", s.opts.Asset, err)
	}
	if err := s.lock.Check(ctx); err != nil {
		return nil, fmt.Errorf("backup of %s lost its lock, another process may have taken it over: %w", s.opts.Asset, err)
	}
	var raw json.RawMessage
	if extra != nil {
		if raw, err = json.Marshal(extra); err != nil {
			return nil, err
		}
	}
	ws := s.w.Stats()
	s.stats.BytesNew, s.stats.BytesStored, s.stats.BlobsNew = ws.BytesNew, ws.BytesStored, ws.BlobsNew
	host, _ := os.Hostname()
	snap = &repo.Snapshot{Asset: s.opts.Asset, Kind: s.opts.Kind, Type: typ, Host: host,
		Parent: s.parent, StartTime: s.start, EndTime: s.r.Clock().UTC(), Tree: tree, Nodes: count, Stats: s.stats, Extra: raw}
	if err := s.r.CommitSnapshot(ctx, s.view, snap); err != nil {
		return nil, fmt.Errorf("backup of %s: %w; run the backup again", s.opts.Asset, err)
	}
	s.opts.Log.Info("backup finished", "asset", s.opts.Asset, "snapshot", snap.ID.Short())
	return snap, nil
}

// SetParent records the snapshot this one was made from (content taken
// over from it without reading the source again).
func (s *Session) SetParent(id repo.ID) { s.parent = &id }

// Abort ends the session without recording a snapshot. The writer removes
// the packs it stored that no index names (repo.Writer.Abort); what an
// index already names stays for a retry to reuse, or for expire to sweep.
// Abort after Commit does nothing, so it can be deferred.
func (s *Session) Abort() {
	if !s.closed {
		s.w.Abort()
		s.release()
	}
}

func (s *Session) release() {
	s.closed = true
	s.lock.Unlock()
}
