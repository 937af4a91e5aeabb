package bucket

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/durable"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// ErrNotInSnapshot is returned for a --path the snapshot holds no key of.
var ErrNotInSnapshot = errors.New("not in the snapshot")

// RestoreFlags are the bucket kind's restore flags.
func (kind) RestoreFlags() []asset.Flag {
	return []asset.Flag{
		{Name: "path", Usage: "only this key, or the keys below this prefix (relative to the asset's prefix)"},
		{Name: "overwrite", Type: asset.FlagBool, Usage: "restore into a directory or prefix that is not empty, writing over what has the key of a restored object"},
	}
}

// Restore writes a snapshot's objects to a directory (--to DIR) or to a
// bucket (--to s3://bucket/prefix).
func (kind) Restore(ctx context.Context, r *asset.Restore) (*asset.Restored, error) {
	cfg, err := configOf(r.Asset)
	if err != nil {
		return nil, err
	}
	if r.To == "" {
		return nil, asset.Usagef("restore of a bucket asset needs --to DIR (one file per object) or --to s3://bucket/prefix")
	}
	if r.Snapshot == nil {
		return nil, errors.New("restore of a bucket asset: no snapshot given")
	}
	o := restoreOptions{sel: r.Flags.String("path"), overwrite: r.Flags.Bool("overwrite"), workers: r.Workers,
		progress: r.Progress, uid: r.UID, gid: r.GID}
	start := time.Now()
	var res *restoreResult
	if strings.HasPrefix(r.To, "s3:") {
		res, err = restoreToBucket(ctx, r.Repo, r.Snapshot, cfg, r.To, o)
	} else {
		res, err = restoreToDir(ctx, r.Repo, r.Snapshot, r.To, o)
	}
	if errors.Is(err, ErrNotInSnapshot) {
		return nil, &asset.UsageError{Err: err}
	}
	if err != nil {
		return nil, err
	}
	s := r.Snapshot
	out := &asset.Restored{Snapshot: s, Lines: []string{fmt.Sprintf("restored snapshot %s of %s to %s: %d objects, %s in %s",
		s.ID.Short(), r.Asset.Name, res.target, res.objects, asset.HumanBytes(res.bytes), time.Since(start).Round(time.Millisecond))}}
	out.Lines = append(out.Lines, res.notes...)
	return out, nil
}

type restoreOptions struct {
	sel       string // --path: a key or prefix relative to the asset's prefix
	overwrite bool
	workers   int
	progress  func(asset.Progress)
	uid, gid  int
}

type restoreResult struct {
	target  string
	objects int64
	bytes   int64
	notes   []string
}

// sidecarRecord is one line of the metadata file of a directory restore.
type sidecarRecord struct {
	// File is the object's file, relative to the restore directory
	// (FileBase64 when it is not valid UTF-8).
	File       string `json:"file,omitempty"`
	FileBase64 string `json:"file_base64,omitempty"`
	Object
}

// restoreToDir writes every object (or those --path selects) as a file
// below dir, and their metadata to dir/.lifeboat-bucket-metadata.jsonl.
func restoreToDir(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, dir string, o restoreOptions) (*restoreResult, error) {
	if !filepath.IsAbs(dir) {
		return nil, asset.Usagef("restore target %q is neither an absolute directory nor an s3:// URL", dir)
	}
	create, err := checkDir(dir, o.overwrite)
	if err != nil {
		return nil, err
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	// A first pass finds the directories the objects need (a file whose
	// name one of them takes steps aside) and refuses a path too long
	// before anything is written.
	dirs := map[string]bool{}
	res := &restoreResult{target: dir}
	err = r.WalkTree(ctx, idx, snap.Tree, func(n *repo.Node) error {
		if n.Path == metaNode {
			return nil
		}
		k, err := keyOf(n.Path)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", snap.ID.Short(), repo.ErrCorrupt)
		}
		if underPath(k, o.sel) {
			if _, err := localPath(k, nil); err != nil {
				return err
			}
			localDirs(k, dirs)
			res.objects++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.objects == 0 && o.sel != "" {
		return nil, fmt.Errorf("no key %s in snapshot %s: %w", quoteKey(o.sel), snap.ID.Short(), ErrNotInSnapshot)
	}
	if create {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("restore target: %w", err)
		}
	}
	target := func(p string) string {
		k, err := keyOf(p)
		if err != nil || !underPath(k, o.sel) {
			return "" // the metadata node, and what --path leaves out
		}
		lp, err := localPath(k, dirs)
		if err != nil {
			return ""
		}
		return filepath.Join(dir, filepath.FromSlash(lp))
	}
	st, err := r.RestoreTree(ctx, idx, snap.Tree, repo.RestoreOptions{Target: target, Dir: dir, UID: o.uid, GID: o.gid,
		Workers: o.workers, Progress: func(w int64) {
			if o.progress != nil {
				o.progress(asset.Progress{Line: fmt.Sprintf("restore: %s written", asset.HumanBytes(w)), Done: w})
			}
		}})
	if err != nil {
		return nil, err
	}
	res.bytes = st.Bytes
	if err := writeSidecar(ctx, r, idx, snap, dir, dirs, o); err != nil {
		return nil, err
	}
	if create {
		if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	res.notes = append(res.notes, fmt.Sprintf("content types, headers, user metadata and tags are in %s, one JSON line per object",
		filepath.Join(dir, sidecarName)))
	return res, nil
}

// writeSidecar writes the metadata file of a directory restore, whole or
// not at all (a temporary file renamed into place).
func writeSidecar(ctx context.Context, r *repo.Repository, idx *repo.Index, snap *repo.Snapshot, dir string, dirs map[string]bool, o restoreOptions) error {
	src := newContentSource(ctx, r, idx, 1)
	defer src.close()
	sr, err := openSnapshot(ctx, r, idx, snap, src)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, sidecarName+".*")
	if err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for {
		e, err := sr.next(ctx)
		if err != nil {
			return err
		}
		if e == nil {
			break
		}
		if !underPath(e.key, o.sel) {
			continue
		}
		lp, err := localPath(e.key, dirs)
		if err != nil {
			return err
		}
		rec := sidecarRecord{Object: *e.obj}
		if utf8.ValidString(lp) {
			rec.File = lp
		} else {
			rec.FileBase64 = base64.StdEncoding.EncodeToString([]byte(lp))
		}
		if err := enc.Encode(&rec); err != nil {
			return fmt.Errorf("metadata file: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, sidecarName)); err != nil {
		return fmt.Errorf("metadata file: %w", err)
	}
	return durable.SyncDir(dir)
}

// checkDir accepts an absent or empty directory, or with overwrite any
// directory; it reports whether the directory must be created.
func checkDir(dir string, overwrite bool) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("restore target: %w", err)
	}
	if len(entries) > 0 && !overwrite {
		return false, asset.Usagef("%s is not empty: restore into an empty directory, or give --overwrite to write over the files of restored objects", dir)
	}
	return false, nil
}

// restoreToBucket puts the snapshot's objects below the prefix of the
// bucket rawURL names, with their headers, user metadata and tags.
func restoreToBucket(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, cfg *Config, rawURL string, o restoreOptions) (*restoreResult, error) {
	loc, err := ParseLocation(rawURL)
	if err != nil {
		return nil, asset.Usagef("--to: %v", err)
	}
	u, _ := url.Parse(rawURL)
	loc = loc.withDefaults(cfg.Location, u.Query())
	cl, err := newClient(ctx, loc, cfg)
	if err != nil {
		return nil, err
	}
	defer cl.close()
	if !o.overwrite {
		empty, err := cl.isEmpty(ctx, loc.Prefix)
		if err != nil {
			return nil, err
		}
		if !empty {
			return nil, asset.Usagef("%s is not empty: restore into an empty prefix, or give --overwrite to write over the objects of the keys restored", loc.Where())
		}
	}
	st, err := putObjects(ctx, r, snap, cl, o)
	if err != nil {
		return nil, err
	}
	res := &restoreResult{target: loc.Where(), objects: st.objects, bytes: st.bytes}
	if st.skipped > 0 {
		res.notes = append(res.notes, fmt.Sprintf("%d object whose key is the asset's prefix itself (a directory marker) was not restored: it has no key at the root of a bucket", st.skipped))
	}
	return res, nil
}

type putStats struct {
	objects, bytes, skipped int64
}

// putObjects restores the snapshot's objects into cl's prefix, each
// checked against the SHA-256 recorded when it was backed up before it
// becomes visible.
func putObjects(ctx context.Context, r *repo.Repository, snap *repo.Snapshot, cl *client, o restoreOptions) (*putStats, error) {
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	workers := o.workers
	if workers <= 0 {
		workers = defaultWorkers
	}
	src := newContentSource(ctx, r, idx, workers)
	defer src.close()
	sr, err := openSnapshot(ctx, r, idx, snap, src)
	if err != nil {
		return nil, err
	}
	var st putStats
	var written atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan *entry, workers)
	g.Go(func() error {
		defer close(work)
		found := false
		for {
			e, err := sr.next(gctx)
			if err != nil {
				return err
			}
			if e == nil {
				break
			}
			if !underPath(e.key, o.sel) {
				continue
			}
			found = true
			if cl.loc.Prefix+e.key == "" {
				st.skipped++
				continue
			}
			select {
			case work <- e:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		if !found && o.sel != "" {
			return fmt.Errorf("no key %s in snapshot %s: %w", quoteKey(o.sel), snap.ID.Short(), ErrNotInSnapshot)
		}
		return nil
	})
	var objects atomic.Int64
	progress := atomic.Int64{}
	for range workers {
		g.Go(func() error {
			for e := range work {
				if err := cl.put(gctx, e, src.open(gctx, e.node), o.overwrite); err != nil {
					return err
				}
				objects.Add(1)
				w := written.Add(e.node.Size)
				if now := time.Now().Unix(); o.progress != nil && progress.Swap(now) != now {
					o.progress(asset.Progress{Line: fmt.Sprintf("restore: %d objects, %s written", objects.Load(), asset.HumanBytes(w)), Done: w})
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	st.objects, st.bytes = objects.Load(), written.Load()
	return &st, nil
}

// partSize is the size of each part of an object restored in parts; an
// object no larger is put whole. Each worker holds one such buffer.
const partSize = 16 << 20

// put stores one object of a snapshot below the client's prefix, reading
// its content from content. The content is checked against the recorded
// SHA-256 before the object is committed (a single put is sent only once
// it is read whole; a multipart upload is completed only then), so a
// damaged object never appears in the target.
func (c *client) put(ctx context.Context, e *entry, content io.Reader, overwrite bool) error {
	o := e.obj
	key := c.loc.Prefix + e.key
	h := sha256.New()
	content = io.TeeReader(content, h)
	check := func() error {
		if got := hex.EncodeToString(h.Sum(nil)); got != o.SHA256 {
			return fmt.Errorf("restore %s: the content's SHA-256 is %s, the snapshot recorded %s: %w", quoteKey(e.key), got, o.SHA256, repo.ErrCorrupt)
		}
		return nil
	}
	var ifNoneMatch *string
	if !overwrite {
		ifNoneMatch = aws.String("*")
	}
	if o.Size <= partSize {
		return c.putWhole(ctx, key, e, content, ifNoneMatch, check)
	}
	return c.putParts(ctx, key, e, content, ifNoneMatch, check)
}

// headers are the headers an object is put with, as the SDK takes them.
type headers struct {
	ctype, cenc, cdisp, clang, cache, redirect *string
	expires                                    *time.Time
	tagging                                    *string
}

func headersOf(o *Object) headers {
	h := headers{ctype: nonEmpty(o.ContentType), cenc: nonEmpty(o.ContentEncoding), cdisp: nonEmpty(o.ContentDisposition),
		clang: nonEmpty(o.ContentLanguage), cache: nonEmpty(o.CacheControl), redirect: nonEmpty(o.WebsiteRedirectLocation),
		tagging: tagging(o.Tags)}
	if t, err := http.ParseTime(o.Expires); err == nil {
		h.expires = &t
	}
	return h
}

// putWhole reads the object whole, checks it, and puts it.
func (c *client) putWhole(ctx context.Context, key string, e *entry, content io.Reader, ifNoneMatch *string, check func() error) error {
	o := e.obj
	buf := make([]byte, o.Size)
	if _, err := io.ReadFull(content, buf); err != nil {
		return err
	}
	if err := expectEOF(content, e.key); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	h := headersOf(o)
	_, err := c.api.PutObject(ctx, &s3api.PutObjectInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(key),
		Body: bytes.NewReader(buf), ContentLength: aws.Int64(o.Size), IfNoneMatch: ifNoneMatch,
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(crcBase64(crc32.Checksum(buf, castagnoli))),
		ContentType: h.ctype, ContentEncoding: h.cenc, ContentDisposition: h.cdisp, ContentLanguage: h.clang, CacheControl: h.cache,
		Expires: h.expires, WebsiteRedirectLocation: h.redirect, Metadata: o.Metadata, Tagging: h.tagging})
	if err != nil {
		return c.putError(key, err)
	}
	return nil
}

// putParts puts the object as a multipart upload of partSize parts, and
// completes it only once the whole content is read and checked.
func (c *client) putParts(ctx context.Context, key string, e *entry, content io.Reader, ifNoneMatch *string, check func() error) error {
	o := e.obj
	h := headersOf(o)
	up, err := c.api.CreateMultipartUpload(ctx, &s3api.CreateMultipartUploadInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(key),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ContentType:       h.ctype, ContentEncoding: h.cenc, ContentDisposition: h.cdisp, ContentLanguage: h.clang, CacheControl: h.cache,
		Expires: h.expires, WebsiteRedirectLocation: h.redirect, Metadata: o.Metadata, Tagging: h.tagging})
	if err != nil {
		return c.putError(key, err)
	}
	committed := false
	defer func() {
		if !committed {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = c.api.AbortMultipartUpload(actx, &s3api.AbortMultipartUploadInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(key), UploadId: up.UploadId})
		}
	}()
	buf := make([]byte, partSize)
	var parts []types.CompletedPart
	for left, num := o.Size, int32(1); left > 0; num++ {
		n := min(left, partSize)
		if _, err := io.ReadFull(content, buf[:n]); err != nil {
			return err
		}
		left -= n
		sum := crcBase64(crc32.Checksum(buf[:n], castagnoli))
		out, err := c.api.UploadPart(ctx, &s3api.UploadPartInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(key), UploadId: up.UploadId,
			PartNumber: aws.Int32(num), Body: bytes.NewReader(buf[:n]), ContentLength: aws.Int64(n),
			ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c, ChecksumCRC32C: aws.String(sum)})
		if err != nil {
			return c.putError(key, err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(num), ETag: out.ETag, ChecksumCRC32C: aws.String(sum)})
	}
	if err := expectEOF(content, e.key); err != nil {
		return err
	}
	if err := check(); err != nil {
		return err
	}
	_, err = c.api.CompleteMultipartUpload(ctx, &s3api.CompleteMultipartUploadInput{Bucket: aws.String(c.loc.Bucket), Key: aws.String(key),
		UploadId: up.UploadId, IfNoneMatch: ifNoneMatch, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return c.putError(key, err)
	}
	committed = true
	return nil
}

func (c *client) putError(key string, err error) error {
	err = c.wrap("put", key, err)
	if errors.Is(err, errExists) {
		return fmt.Errorf("%w: a restore never overwrites without --overwrite", err)
	}
	return err
}

// expectEOF fails when content holds more than the recorded size.
func expectEOF(content io.Reader, key string) error {
	var one [1]byte
	if n, err := content.Read(one[:]); n > 0 || (err != nil && err != io.EOF) {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%s: content longer than recorded: %w", quoteKey(key), repo.ErrCorrupt)
		}
		return err
	}
	return nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}
