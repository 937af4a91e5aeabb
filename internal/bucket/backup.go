package bucket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
	"github.com/lifeboat-dr/lifeboat/internal/treestore"
)

const (
	// defaultWorkers is how many objects are read at once when the
	// caller does not say.
	defaultWorkers = 8
	// prefetchMax is the largest object read ahead into memory by a
	// worker; larger ones are streamed into the repository in turn. It
	// bounds a backup's memory to about 2 x workers x prefetchMax.
	prefetchMax = 4 << 20
	// readAttempts is how often an object whose read breaks off is read
	// again before the backup fails.
	readAttempts = 3
	// drillMark starts the temporary prefixes drills restore into; a
	// backup of a whole bucket leaves them out.
	drillMark = ".lifeboat-drill-"
)

// Backup stores the asset's objects as one snapshot. It records nothing
// unless it returns nil.
func (kind) Backup(ctx context.Context, b *asset.Backup) (*repo.Snapshot, error) {
	cfg, err := configOf(b.Asset)
	if err != nil {
		return nil, err
	}
	bk := &backup{b: b, cfg: cfg, log: b.Log, info: &Info{URL: cfg.Location.String(), Bucket: cfg.Location.Bucket,
		Prefix: cfg.Location.Prefix, Endpoint: cfg.Location.Endpoint, Tags: true}}
	if bk.log == nil {
		bk.log = slog.New(slog.DiscardHandler)
	}
	snap, err := bk.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup of %s (%s): %w", b.Asset.Name, cfg.Location.Where(), err)
	}
	i := bk.info
	b.Summary = fmt.Sprintf("%d objects, %d downloaded, %d unchanged", i.Objects, i.Downloaded, i.Reused)
	if i.Vanished > 0 {
		b.Warn(fmt.Sprintf("%d objects were deleted while the backup ran (left out)", i.Vanished))
	}
	return snap, nil
}

type backup struct {
	b    *asset.Backup
	cfg  *Config
	log  *slog.Logger
	cl   *client
	sess *treestore.Session
	info *Info

	noTags   atomic.Bool // the store refused tagging once: not asked again
	tagsOnce sync.Once
	warnMu   sync.Mutex
}

// warn passes a warning on from any goroutine.
func (bk *backup) warn(msg string) {
	bk.warnMu.Lock()
	defer bk.warnMu.Unlock()
	bk.b.Warn(msg)
}

// job is one listed object on its way through the workers to the session.
type job struct {
	l      listed
	parent *entry // the parent's object of the same key, size and ETag
	done   chan struct{}

	// Set by the worker.
	obj      Object
	reuse    bool // the parent's content stands
	fetched  bool // data holds the content, read ahead (small objects)
	data     []byte
	sum      []byte // SHA-256 of data
	vanished bool
	err      error
}

func (bk *backup) run(ctx context.Context) (*repo.Snapshot, error) {
	cfg, b := bk.cfg, bk.b
	cl, err := newClient(ctx, cfg.Location, cfg)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	bk.cl = cl
	bk.checkVersioning(ctx)
	sess, err := treestore.Begin(ctx, b.Repo, treestore.Options{Asset: b.Asset.Name, Kind: string(KindName), LockWait: b.LockWait, Log: bk.log})
	if err != nil {
		return nil, err
	}
	defer sess.Abort()
	bk.sess = sess
	workers := b.Workers
	if workers <= 0 {
		workers = defaultWorkers
	}
	src := newContentSource(ctx, b.Repo, sess.Index(), workers)
	defer src.close()
	var parent *snapReader
	if !b.Full {
		parent = bk.openParent(ctx, src)
	}
	// The records wait in a file until the objects are stored (the tree
	// puts them after the objects), in the state directory rather than a
	// /tmp that may be memory.
	spool, err := os.CreateTemp(b.StateDir, "lifeboat-bucket-*.jsonl")
	if err != nil && b.StateDir != "" {
		spool, err = os.CreateTemp("", "lifeboat-bucket-*.jsonl")
	}
	if err != nil {
		return nil, fmt.Errorf("metadata spool: %w", err)
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	meta := bufio.NewWriterSize(spool, 256<<10)
	enc := json.NewEncoder(meta)

	if err := bk.walk(ctx, parent, workers, enc); err != nil {
		return nil, err
	}
	bk.info.Tags = !bk.noTags.Load()
	if bk.info.Vanished > 0 {
		// Objects that vanished may mean the bucket itself went away.
		if err := cl.checkBucket(ctx); err != nil {
			return nil, err
		}
	}
	if err := meta.Flush(); err != nil {
		return nil, fmt.Errorf("metadata spool: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("metadata spool: %w", err)
	}
	mn := &repo.Node{Path: metaNode, Type: repo.NodeFile, Mode: 0o600, MTime: time.Now().UnixNano()}
	if err := sess.Add(ctx, mn, spool); err != nil {
		return nil, err
	}
	return sess.Commit(ctx, "full", bk.info)
}

// walk lists the bucket and stores every object in key order. The lister
// matches each listed object with the parent's object of the same key; up
// to workers objects are prepared at once (tags read, small objects
// downloaded), and one goroutine stores them in turn, writing their
// records to enc.
func (bk *backup) walk(ctx context.Context, parent *snapReader, workers int, enc *json.Encoder) error {
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan *job)
	queue := make(chan *job, 2*workers)
	// The lister hands out objects in key order, matched with the parent.
	g.Go(func() error {
		defer close(jobs)
		defer close(queue)
		var pe *entry
		skip := func(rel string) bool { return bk.cfg.Location.Prefix == "" && strings.HasPrefix(rel, drillMark) }
		return bk.cl.list(gctx, bk.cfg.Location.Prefix, skip, func(l listed) error {
			j := &job{l: l, done: make(chan struct{})}
			for parent != nil && (pe == nil || pe.key < l.Key) {
				var err error
				if pe, err = parent.next(gctx); err != nil {
					bk.warn(fmt.Sprintf("cannot read the last snapshot (%v): the objects after %s are downloaded again", err, quoteKey(l.Key)))
					parent, pe = nil, nil
				} else if pe == nil {
					parent = nil
				}
			}
			if pe != nil && pe.key == l.Key && pe.obj.Size == l.Size && pe.obj.ETag == l.ETag && l.ETag != "" {
				j.parent = pe
			}
			for _, ch := range []chan *job{jobs, queue} {
				select {
				case ch <- j:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
	})
	for range workers {
		g.Go(func() error {
			for j := range jobs {
				j.err = bk.prepare(gctx, j)
				close(j.done)
			}
			return nil
		})
	}
	g.Go(func() error {
		progress := time.Now()
		for j := range queue {
			select {
			case <-j.done:
			case <-gctx.Done():
				return gctx.Err()
			}
			if j.err != nil {
				return j.err
			}
			if err := bk.store(gctx, j); err != nil {
				return err
			}
			if j.vanished {
				continue
			}
			if err := enc.Encode(&j.obj); err != nil {
				return fmt.Errorf("metadata spool: %w", err)
			}
			if time.Since(progress) > time.Second {
				progress = time.Now()
				bk.b.Progress(asset.Progress{Line: fmt.Sprintf("backup %s: %d objects, %s downloaded", bk.b.Asset.Name, bk.info.Objects,
					asset.HumanBytes(bk.info.BytesDownloaded)), Done: bk.info.BytesDownloaded})
			}
		}
		return nil
	})
	return g.Wait()
}

// checkVersioning records, and warns, that a versioned bucket's history
// is not backed up.
func (bk *backup) checkVersioning(ctx context.Context) {
	switch v := bk.cl.versioning(ctx); v {
	case "Enabled", "Suspended", "unknown":
		bk.info.Versioning = v
		if v != "unknown" {
			bk.info.Note = fmt.Sprintf("bucket %s has versioning %s: only the current version of each object is backed up, not older versions or delete markers",
				bk.cfg.Location.Bucket, strings.ToLower(v))
			bk.b.Warn(bk.info.Note)
		}
	}
}

// openParent starts reading the newest snapshot of the asset taken from
// the same bucket and prefix, or returns nil when there is none.
func (bk *backup) openParent(ctx context.Context, src *contentSource) *snapReader {
	snaps, err := bk.b.Repo.Snapshots(ctx, bk.b.Asset.Name)
	if err != nil {
		bk.b.Warn(fmt.Sprintf("cannot list the snapshots of %s (%v): every object is downloaded again", bk.b.Asset.Name, err))
		return nil
	}
	for i := len(snaps) - 1; i >= 0; i-- {
		s := snaps[i]
		info, err := SnapshotInfo(s)
		if err != nil {
			continue
		}
		if info.Bucket != bk.info.Bucket || info.Prefix != bk.info.Prefix || info.Endpoint != bk.info.Endpoint {
			continue // another bucket: equal ETags say nothing
		}
		sr, err := openSnapshot(ctx, bk.b.Repo, bk.sess.Index(), s, src)
		if err != nil {
			bk.b.Warn(fmt.Sprintf("cannot read the last snapshot %s (%v): every object is downloaded again", s.ID.Short(), err))
			return nil
		}
		bk.sess.SetParent(s.ID)
		return sr
	}
	return nil
}

// prepare does for one object what can be done out of order: decide
// whether the parent's copy stands, read the tags, read a small object.
func (bk *backup) prepare(ctx context.Context, j *job) error {
	if p := j.parent; p != nil {
		j.obj = *p.obj
		j.reuse = true
		tagCount := -1
		if !j.l.LastModified.Equal(p.obj.LastModified) {
			// Written again (same content, perhaps new headers): the
			// headers are read again, the content only if it changed.
			tc, err := bk.cl.head(ctx, j.l.Key, &j.obj)
			if errors.Is(err, errVanished) {
				j.vanished = true
				return nil
			}
			if err != nil {
				return err
			}
			tagCount = tc
			if j.obj.ETag != p.obj.ETag || j.obj.Size != p.obj.Size {
				j.reuse = false
			}
		}
		if j.reuse {
			j.obj.Tags = nil
			return bk.readTags(ctx, j, tagCount)
		}
	}
	if j.l.Size > prefetchMax {
		return nil // streamed by store, in turn
	}
	var err error
	for attempt := 1; ; attempt++ {
		var buf bytes.Buffer
		var tagCount int
		tagCount, err = bk.download(ctx, j, &buf)
		if errors.Is(err, errVanished) {
			j.vanished = true
			return nil
		}
		if err == nil {
			j.data, j.fetched = buf.Bytes(), true
			h := sha256.Sum256(j.data)
			j.sum = h[:]
			return bk.readTags(ctx, j, tagCount)
		}
		var re *readError
		if !errors.As(err, &re) || attempt == readAttempts || ctx.Err() != nil {
			return err
		}
		bk.log.Warn("object read broke off; reading it again", "key", quoteKey(j.l.Key), "attempt", attempt, "err", err)
	}
}

// readError is a failure while reading an object's content (not while
// asking for it): the read is tried again.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// download reads an object's content into w, with its headers into j.obj.
func (bk *backup) download(ctx context.Context, j *job, w io.Writer) (tagCount int, err error) {
	body, tagCount, err := bk.cl.get(ctx, j.l.Key, &j.obj)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	n, err := io.Copy(w, body)
	if err != nil {
		return 0, &readError{fmt.Errorf("read %s: %w", quoteKey(j.l.Key), err)}
	}
	if n != j.obj.Size {
		return 0, &readError{fmt.Errorf("read %s: %d bytes, the store said %d", quoteKey(j.l.Key), n, j.obj.Size)}
	}
	return tagCount, nil
}

// readTags sets the object's tags; tagCount is what the store said of
// their number (-1 for nothing).
func (bk *backup) readTags(ctx context.Context, j *job, tagCount int) error {
	j.obj.Tags = nil
	if tagCount == 0 || bk.noTags.Load() {
		return nil
	}
	tags, err := bk.cl.tags(ctx, j.l.Key)
	switch {
	case errors.Is(err, errNoTagging):
		bk.tagsOnce.Do(func() {
			bk.noTags.Store(true)
			bk.warn(fmt.Sprintf("the store of %s does not support object tagging: tags are not backed up", bk.cfg.Location.Where()))
		})
		return nil
	case errors.Is(err, errVanished):
		j.vanished = true
		return nil
	case err != nil:
		return err
	}
	j.obj.Tags = tags
	return nil
}

// store records one prepared object in the session, in key order.
func (bk *backup) store(ctx context.Context, j *job) error {
	info := bk.info
	if j.vanished {
		info.Vanished++
		bk.log.Warn("deleted since it was listed; left out", "key", quoteKey(j.l.Key))
		return nil
	}
	node := &repo.Node{Path: treePath(j.l.Key), Type: repo.NodeFile, Mode: 0o600}
	stored := false
	if j.reuse {
		node.Blocks, node.Size = j.parent.node.Blocks, j.parent.node.Size
		node.MTime = j.obj.LastModified.UnixNano()
		ok, err := bk.sess.AddStored(ctx, node)
		if err != nil {
			return err
		}
		if ok {
			info.Reused++
			stored = true
		} else {
			bk.log.Info("the last snapshot's copy is being expired; reading it again", "key", quoteKey(j.l.Key))
			node.Blocks = nil // the parent's: Add must not write into them
		}
	}
	if !stored {
		var err error
		if j.fetched && !j.reuse {
			node.MTime = j.obj.LastModified.UnixNano()
			if err = bk.sess.Add(ctx, node, bytes.NewReader(j.data)); err != nil {
				return err
			}
			j.obj.SHA256 = hex.EncodeToString(j.sum)
		} else if err = bk.stream(ctx, j, node); err != nil {
			return err
		}
		if j.vanished {
			info.Vanished++
			bk.log.Warn("deleted since it was listed; left out", "key", quoteKey(j.l.Key))
			return nil
		}
		info.Downloaded++
		info.BytesDownloaded += j.obj.Size
	}
	j.obj.setKey(j.l.Key)
	// The listing names the class of every object (a GET leaves out
	// STANDARD), and sees a lifecycle move that leaves the time alone.
	j.obj.StorageClass = j.l.StorageClass
	info.Objects++
	info.Bytes += j.obj.Size
	j.data, j.fetched = nil, false
	return nil
}

// stream reads a large object straight into the session. A read that
// breaks off is started again; the blocks stored by the broken attempt
// are found again by their IDs, and the session records the node only
// once its content is complete.
func (bk *backup) stream(ctx context.Context, j *job, node *repo.Node) error {
	for attempt := 1; ; attempt++ {
		body, tagCount, err := bk.cl.get(ctx, j.l.Key, &j.obj)
		if errors.Is(err, errVanished) {
			j.vanished = true
			return nil
		}
		if err != nil {
			return err
		}
		node.MTime = j.obj.LastModified.UnixNano()
		src := &hashingReader{r: body, h: sha256.New(), want: j.obj.Size, key: j.l.Key}
		err = bk.sess.Add(ctx, node, src)
		body.Close()
		if err == nil {
			j.obj.SHA256 = hex.EncodeToString(src.h.Sum(nil))
			return bk.readTags(ctx, j, tagCount)
		}
		if src.err == nil || attempt == readAttempts || ctx.Err() != nil {
			return err
		}
		bk.log.Warn("object read broke off; reading it again", "key", quoteKey(j.l.Key), "attempt", attempt, "err", src.err)
	}
}

// hashingReader hashes what it reads and fails a body shorter or longer
// than the store said; err is its own failure, told apart from the
// repository's.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want int64
	key  string
	err  error
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	switch {
	case err == io.EOF && r.n != r.want:
		r.err = fmt.Errorf("%s: %d bytes, the store said %d", quoteKey(r.key), r.n, r.want)
		return n, r.err
	case err != nil && err != io.EOF:
		r.err = err
	}
	return n, err
}
