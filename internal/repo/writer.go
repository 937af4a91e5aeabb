package repo

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
)

// WriterStats counts what a writer stored.
type WriterStats struct {
	BlobsNew     int64 // blobs written
	BytesNew     int64 // plaintext bytes of new blobs
	BytesStored  int64 // bytes of packs and index objects written
	Packs        int64
	ListsPatched int64 // block lists stored as patches of their parent's (FORMAT.md §6)
	// FramesUnprobed counts frames stored raw after only their start
	// failed to compress (Sink.probe).
	FramesUnprobed int64
}

// Writer stores blobs for one backup. Callers get a Sink per goroutine;
// sinks gather blobs into frames (so that compression sees neighbouring
// blocks together), seal them, and hand them to the writer, which packs
// frames and uploads packs. A snapshot may reference a blob only after
// Finish returned nil: only then are its pack and index durable.
//
// Uploads run in the background under the writer's context: the one it
// was started with, cancelled also by Abort, by the end of Finish's
// context while Finish waits, and by the repository's Close. A cancelled
// upload leaves at most packs no index names, or an index no snapshot
// uses: garbage for expire, never a reference to data that is not stored.
type Writer struct {
	r        *Repository
	known    *Index // blobs known to exist before this writer (may be nil)
	ctx      context.Context
	cancel   context.CancelCauseFunc
	mu       sync.Mutex
	cur      *packBuf
	pending  []packEntry // uploaded packs not yet in an index object
	unsure   []unindexed // packs whose index object failed to store
	indexes  []ID
	seen     seenSet
	uploads  chan *packBuf
	stopped  chan struct{} // closed by the first of Finish and Abort
	free     chan *packBuf // recycled pack buffers
	wg       sync.WaitGroup
	errOnce  sync.Once
	err      error
	failed   chan struct{}
	finished bool // Finish or Abort began
	done     bool // Finish returned nil
	stats    WriterStats
}

// errAborted is the failure of a writer that Abort stopped.
var errAborted = errors.New("writer aborted")

// unindexed is a batch of packs whose index object failed to store, with
// the index object's name and the failure.
type unindexed struct {
	index string
	packs []packEntry
	err   error
}

type packBuf struct {
	data   bytes.Buffer
	frames []frameHeader
}

// uploaders is the number of packs uploaded at once. It bounds the writer's
// memory to about four packs (16 MiB each by default).
const uploaders = 2

// indexEvery is how many packs an index object covers at most. Writing
// index objects along the way lets a later backup find the blobs of an
// interrupted one.
const indexEvery = 16

// writerIndexPayload closes an index object early when the packs it covers
// name many blobs: their entries stay in memory until it is written, and
// a pack of data that compresses tenfold names 20,000 of them. About
// 110,000 blobs (4 MiB of entries) keeps that near 10 MiB with the
// encoding, however large the backup.
const writerIndexPayload = 4 << 20

// NewWriterContext starts a writer whose uploads run under ctx: once ctx
// is done, uploads in flight stop, the writer fails, and Finish reports
// it. known, when not nil, is consulted to skip blobs the repository
// already holds. Every writer ends with Finish or Abort.
func (r *Repository) NewWriterContext(ctx context.Context, known *Index) *Writer {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &Writer{r: r, known: known, ctx: wctx, cancel: cancel, uploads: make(chan *packBuf),
		stopped: make(chan struct{}), failed: make(chan struct{}), free: make(chan *packBuf, uploaders+1)}
	// Two generations of 128Ki IDs (about 20 MiB): the last 1-2 GiB of
	// blobs written. The known index covers the parent's.
	w.seen.init(1 << 17)
	if err := r.addWriter(w); err != nil {
		w.fail(err)
		cancel(err)
	}
	for i := 0; i < uploaders; i++ {
		w.wg.Add(1)
		go w.uploadLoop()
	}
	return w
}

// NewWriter is NewWriterContext for a caller without a context: its
// uploads stop only at Abort, at the end of Finish's context, or when the
// repository is closed. Callers that have a context pass it to
// NewWriterContext, so that cancelling them stops the uploads too.
func (r *Repository) NewWriter(known *Index) *Writer {
	return r.NewWriterContext(context.Background(), known)
}

// BlobID computes the ID a blob with this content has.
func (w *Writer) BlobID(data []byte) ID { return w.r.crypt.blobID(data) }

func (w *Writer) fail(err error) {
	w.errOnce.Do(func() {
		w.err = err
		close(w.failed)
	})
}

// Err returns the first failure of the writer, if any.
func (w *Writer) Err() error {
	select {
	case <-w.failed:
		return w.err
	default:
		return nil
	}
}

// Stats returns the counters so far.
func (w *Writer) Stats() WriterStats {
	return WriterStats{
		BlobsNew:       atomic.LoadInt64(&w.stats.BlobsNew),
		BytesNew:       atomic.LoadInt64(&w.stats.BytesNew),
		BytesStored:    atomic.LoadInt64(&w.stats.BytesStored),
		Packs:          atomic.LoadInt64(&w.stats.Packs),
		ListsPatched:   atomic.LoadInt64(&w.stats.ListsPatched),
		FramesUnprobed: atomic.LoadInt64(&w.stats.FramesUnprobed),
	}
}

// claim reports whether the blob must be stored by the caller: false when
// the repository or this writer already has it.
func (w *Writer) claim(id ID) bool {
	if w.known != nil && w.known.Has(id) {
		return false
	}
	return w.seen.add(id)
}

// addFrame appends a sealed frame to the current pack; a full pack goes to
// the uploaders.
func (w *Writer) addFrame(ctx context.Context, sealed []byte, fh frameHeader) error {
	w.mu.Lock()
	if w.cur == nil {
		w.cur = w.newPackBuf()
	}
	w.cur.data.Write(sealed)
	w.cur.frames = append(w.cur.frames, fh)
	var full *packBuf
	if w.cur.data.Len() >= w.r.cfg.PackSize {
		full, w.cur = w.cur, nil
	}
	w.mu.Unlock()
	if full != nil {
		return w.send(ctx, full)
	}
	return nil
}

// send hands a full pack to an uploader. It gives up when the writer
// failed, stopped or its context ended, or when the caller's ctx did.
func (w *Writer) send(ctx context.Context, p *packBuf) error {
	select {
	case w.uploads <- p:
		return nil
	case <-w.failed:
		return w.err
	case <-w.stopped:
		return errors.New("writer already finished")
	case <-w.ctx.Done():
		return context.Cause(w.ctx)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// uploadLoop uploads the packs handed over until the writer stops. The
// channel is not buffered, so a pack is either uploaded (or dropped, once
// the writer failed) or still the sender's, never left in between.
func (w *Writer) uploadLoop() {
	defer w.wg.Done()
	for {
		var p *packBuf
		select {
		case p = <-w.uploads:
		case <-w.stopped:
			return
		}
		// Once the writer failed nothing more is stored.
		if w.Err() == nil {
			if err := w.uploadPack(w.ctx, p); err != nil {
				w.fail(err)
			}
		}
		p.data.Reset()
		p.frames = nil
		select {
		case w.free <- p:
		default:
		}
	}
}

// newPackBuf takes a recycled pack buffer or makes one. A fresh 16 MiB
// buffer is zeroed by the runtime, which costs more than filling it, and a
// sync.Pool would drop buffers at every collection.
func (w *Writer) newPackBuf() *packBuf {
	select {
	case p := <-w.free:
		return p
	default:
	}
	p := &packBuf{}
	// Room for the pack, the frame that overflows it, and the header.
	p.data.Grow(w.r.cfg.PackSize + 2*w.r.cfg.FrameSize + 1<<20)
	return p
}

// uploadPack seals the header, stores the pack and, every indexEvery packs,
// an index object.
func (w *Writer) uploadPack(ctx context.Context, p *packBuf) error {
	hdr := w.r.crypt.seal(nil, encodePackHeader(p.frames, w.r.crypt.idLen), []byte("pack header"))
	p.data.Write(hdr)
	var l [4]byte
	binary.LittleEndian.PutUint32(l[:], uint32(len(hdr)))
	p.data.Write(l[:])
	data := p.data.Bytes()
	id := hashObject(data)
	name := packName(id)
	if err := w.r.be.Put(ctx, name, bytes.NewReader(data), int64(len(data))); err != nil && !errors.Is(err, storage.ErrExists) {
		// ErrExists means identical bytes are already stored under this
		// content hash (a retried upload): nothing is lost.
		return fmt.Errorf("upload pack %s: %w", id.Short(), err)
	}
	atomic.AddInt64(&w.stats.BytesStored, int64(len(data)))
	atomic.AddInt64(&w.stats.Packs, 1)
	w.mu.Lock()
	w.pending = append(w.pending, packEntry{ID: id, Frames: p.frames})
	var batch []packEntry
	if len(w.pending) >= indexEvery || indexPayloadSize(w.pending, w.r.crypt.idLen) >= writerIndexPayload {
		batch, w.pending = w.pending, nil
	}
	w.mu.Unlock()
	if batch != nil {
		return w.writeIndex(ctx, batch)
	}
	return nil
}

// writeIndex stores an index object naming packs. When that fails the
// packs are remembered with the failure, for Abort to judge whether they
// may be removed.
func (w *Writer) writeIndex(ctx context.Context, packs []packEntry) error {
	payload := encodeIndex(packs, w.r.crypt.idLen)
	id, err := w.r.putContentObject(ctx, "index", payload)
	if err != nil {
		w.mu.Lock()
		w.unsure = append(w.unsure, unindexed{index: "index/" + id.String(), packs: packs, err: err})
		w.mu.Unlock()
		return err
	}
	atomic.AddInt64(&w.stats.BytesStored, int64(len(payload)))
	w.mu.Lock()
	w.indexes = append(w.indexes, id)
	w.mu.Unlock()
	return nil
}

// Finish uploads what remains and writes the last index object. After it
// returns nil every blob saved through the writer's sinks (flushed before)
// is durable and indexed. When ctx ends first, the uploads in flight are
// cancelled and Finish returns the cancellation.
func (w *Writer) Finish(ctx context.Context) error {
	w.mu.Lock()
	if w.finished {
		w.mu.Unlock()
		if err := w.Err(); err != nil {
			return err
		}
		return errors.New("writer already finished")
	}
	w.finished = true
	last := w.cur
	w.cur = nil
	w.mu.Unlock()
	// The uploads Finish waits for end with its context as well.
	stop := context.AfterFunc(ctx, func() { w.cancel(context.Cause(ctx)) })
	if ctx.Err() != nil {
		w.cancel(context.Cause(ctx)) // now, not in AfterFunc's goroutine
	}
	defer func() {
		stop()
		w.cancel(errors.New("writer finished"))
		w.r.removeWriter(w)
	}()
	var err error
	if last != nil && len(last.frames) > 0 {
		err = w.send(ctx, last)
	}
	close(w.stopped)
	w.wg.Wait()
	if err != nil {
		return err
	}
	if err := w.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	batch := w.pending
	w.pending = nil
	w.mu.Unlock()
	if len(batch) > 0 {
		if err := w.writeIndex(w.ctx, batch); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	return nil
}

// Abort stops the writer after a failure or a cancellation: it cancels
// the uploads in flight and returns once the uploaders stopped, so that
// nothing is stored after it. Then it removes the packs it stored that no
// index object names (see removeOwnPacks), so that a backup that failed
// for lack of space gives the space back and its retry can succeed; what
// it cannot remove stays as garbage that no snapshot references, for
// expire. Abort after a Finish that succeeded does nothing, so it can be
// deferred; it may be called more than once.
func (w *Writer) Abort() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.mu.Unlock()
	w.fail(errAborted)
	w.cancel(errAborted)
	w.mu.Lock()
	first := !w.finished
	w.finished = true
	w.mu.Unlock()
	if first {
		close(w.stopped)
	}
	// A Finish running meanwhile closes stopped itself, and its uploads
	// end with the context cancelled above.
	w.wg.Wait()
	w.removeOwnPacks()
	w.r.removeWriter(w)
}

// cleanupTimeout bounds Abort's removal of its packs, which runs on a
// context of its own (the writer's is cancelled by then).
const cleanupTimeout = time.Minute

// removeOwnPacks deletes the packs this writer stored that no index object
// can name. Only such packs are its alone: every other writer and reader
// learns of blobs from index objects, so nothing can reference them. A
// pack that an index object names stays even though the backup failed: a
// concurrent backup may already reuse its blobs, and a retry of this one
// will. When an index object failed to store, its packs are removed only
// if the store said definitely that it stored nothing (no space, or a
// permanent refusal) and the index object is indeed absent; any doubt
// leaves them to expire.
func (w *Writer) removeOwnPacks() {
	w.mu.Lock()
	packs := w.pending
	w.pending = nil
	unsure := w.unsure
	w.unsure = nil
	w.mu.Unlock()
	if len(packs) == 0 && len(unsure) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), cleanupTimeout)
	defer cancel()
	for _, u := range unsure {
		if !errors.Is(u.err, storage.ErrNoSpace) && mayBeStored(u.err) {
			continue
		}
		if _, err := w.r.be.Stat(ctx, u.index); !errors.Is(err, storage.ErrNotFound) {
			continue
		}
		packs = append(packs, u.packs...)
	}
	removed := 0
	for _, p := range packs {
		name := packName(p.ID)
		if err := w.r.be.Delete(ctx, name); err != nil && !errors.Is(err, storage.ErrNotFound) {
			// A put-only credential or an object lock keeps it; expire
			// removes it later (or the retention does).
			w.r.log.Info("could not remove a pack of the failed backup; expire removes it", "object", name, "err", err)
			continue
		}
		removed++
	}
	if removed > 0 {
		w.r.log.Info("removed the packs of the failed backup", "packs", removed, "repository", w.r.Location())
	}
}

// Sink gathers blobs of one goroutine into frames. It is not safe for
// concurrent use; every worker takes its own.
type Sink struct {
	w      *Writer
	raw    []byte
	blobs  []blobEntry
	zbuf   []byte // compressed frame, reused
	sealed []byte // sealed frame, reused: addFrame copies it into the pack
	// probe is set while the sink's frames do not compress: the next one
	// is compressed whole only if its first probeSize bytes compress.
	probe bool
}

// probeSize is how much of a frame is compressed to decide whether the
// rest is worth it, once a frame did not compress: an already compressed
// or encrypted file then costs a sixteenth of the attempts.
const probeSize = 64 << 10

// NewSink returns a sink feeding w.
func (w *Writer) NewSink() *Sink {
	return &Sink{w: w, raw: make([]byte, 0, w.r.cfg.FrameSize+w.r.cfg.BlockSize)}
}

// Save stores data as a blob of type t unless the repository has it, and
// returns its ID and whether it was new.
func (s *Sink) Save(ctx context.Context, t BlobType, data []byte) (ID, bool, error) {
	id := s.w.r.crypt.blobID(data)
	stored, err := s.SaveID(ctx, t, id, data)
	return id, stored, err
}

// SaveID is Save for a caller that has computed id = BlobID(data).
func (s *Sink) SaveID(ctx context.Context, t BlobType, id ID, data []byte) (bool, error) {
	if err := s.w.Err(); err != nil {
		return false, err
	}
	if !s.w.claim(id) {
		return false, nil
	}
	s.raw = append(s.raw, data...)
	s.blobs = append(s.blobs, blobEntry{Type: t, ID: id, Len: uint32(len(data))})
	atomic.AddInt64(&s.w.stats.BlobsNew, 1)
	atomic.AddInt64(&s.w.stats.BytesNew, int64(len(data)))
	if len(s.raw) >= s.w.r.cfg.FrameSize {
		return true, s.Flush(ctx)
	}
	return true, nil
}

// Flush seals the blobs gathered so far into a frame.
func (s *Sink) Flush(ctx context.Context) error {
	if len(s.blobs) == 0 {
		return nil
	}
	c := s.w.r.crypt
	fh := frameHeader{RawLen: uint32(len(s.raw)), Blobs: s.blobs}
	plain := s.raw
	// Incompressible frames are kept raw: decompression costs time and
	// saves nothing.
	if !s.probe || len(s.raw) <= probeSize || compresses(c, s.raw[:probeSize], &s.zbuf) {
		s.probe = !compresses(c, s.raw, &s.zbuf)
		if !s.probe {
			plain = s.zbuf
			fh.Flags |= frameFlagZstd
		}
	} else {
		atomic.AddInt64(&s.w.stats.FramesUnprobed, 1)
	}
	if s.w.r.rcp != nil && hasData(s.blobs) {
		var err error
		if s.sealed, err = s.w.r.sealFrame(s.sealed[:0], plain); err != nil {
			return fmt.Errorf("seal frame: %w", err)
		}
		fh.Flags |= frameFlagSealed
	} else {
		s.sealed = c.seal(s.sealed[:0], plain, nil)
	}
	fh.SealedLen = uint32(len(s.sealed))
	s.raw = s.raw[:0]
	s.blobs = nil
	return s.w.addFrame(ctx, s.sealed, fh)
}

// compresses compresses raw into *zbuf and reports whether that saves at
// least a 64th.
func compresses(c *crypter, raw []byte, zbuf *[]byte) bool {
	*zbuf = c.encoder().EncodeAll(raw, (*zbuf)[:0])
	return len(*zbuf) < len(raw)-len(raw)/64
}

// seenSet remembers recently stored blob IDs in two generations, so that
// its memory stays bounded however much a backup writes. Forgetting an old
// ID costs at most a duplicate blob, never a missing one.
type seenSet struct {
	mu       sync.Mutex
	cur, old map[ID]struct{}
	max      int
}

func (s *seenSet) init(max int) {
	s.cur = make(map[ID]struct{})
	s.max = max
}

// add inserts id and reports whether it was absent.
func (s *seenSet) add(id ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.cur[id]; ok {
		return false
	}
	if _, ok := s.old[id]; ok {
		return false
	}
	if len(s.cur) >= s.max {
		s.old, s.cur = s.cur, make(map[ID]struct{}, s.max)
	}
	s.cur[id] = struct{}{}
	return true
}
