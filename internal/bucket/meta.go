package bucket

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"
	"unicode/utf8"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Object is what a snapshot keeps of one object beside its content: one
// JSON line of the tree's metadata.jsonl, in key order, and one line of
// the metadata file a directory restore writes.
type Object struct {
	// Key is the key relative to the asset's prefix when it is valid
	// UTF-8; KeyBase64 holds it otherwise (JSON strings hold only UTF-8).
	Key       string `json:"key"`
	KeyBase64 string `json:"key_base64,omitempty"`
	Size      int64  `json:"size"`
	// ETag is as the store gave it, quotes included.
	ETag         string    `json:"etag"`
	LastModified time.Time `json:"last_modified"`
	// SHA256 is the hex SHA-256 of the content as it was read: what a
	// drill checks a restored object against.
	SHA256                  string            `json:"sha256"`
	ContentType             string            `json:"content_type,omitempty"`
	ContentEncoding         string            `json:"content_encoding,omitempty"`
	ContentDisposition      string            `json:"content_disposition,omitempty"`
	ContentLanguage         string            `json:"content_language,omitempty"`
	CacheControl            string            `json:"cache_control,omitempty"`
	Expires                 string            `json:"expires,omitempty"` // the header as sent
	WebsiteRedirectLocation string            `json:"website_redirect_location,omitempty"`
	Metadata                map[string]string `json:"metadata,omitempty"` // x-amz-meta-*, names in lower case
	Tags                    map[string]string `json:"tags,omitempty"`
	StorageClass            string            `json:"storage_class,omitempty"`
	VersionID               string            `json:"version_id,omitempty"`
}

// setKey records the relative key k.
func (o *Object) setKey(k string) {
	if utf8.ValidString(k) {
		o.Key, o.KeyBase64 = k, ""
	} else {
		o.Key, o.KeyBase64 = "", base64.StdEncoding.EncodeToString([]byte(k))
	}
}

// key is the relative key recorded.
func (o *Object) key() (string, error) {
	if o.KeyBase64 == "" {
		return o.Key, nil
	}
	b, err := base64.StdEncoding.DecodeString(o.KeyBase64)
	if err != nil {
		return "", fmt.Errorf("key_base64: %w", err)
	}
	return string(b), nil
}

// sameMeta reports whether two records carry the same headers and user
// metadata (not the tags, the content or the times).
func sameMeta(a, b *Object) bool {
	return a.ContentType == b.ContentType && a.ContentEncoding == b.ContentEncoding && a.ContentDisposition == b.ContentDisposition &&
		a.ContentLanguage == b.ContentLanguage && a.CacheControl == b.CacheControl && a.Expires == b.Expires &&
		a.WebsiteRedirectLocation == b.WebsiteRedirectLocation && maps.Equal(a.Metadata, b.Metadata)
}

// Info is what a bucket snapshot records beside its tree (Snapshot.Extra).
type Info struct {
	// URL is the asset's location (it holds no credentials).
	URL      string `json:"url"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix"`
	Endpoint string `json:"endpoint,omitempty"`
	// Objects and Bytes count what the snapshot holds.
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Downloaded objects were read from the store; Reused ones were
	// unchanged since the snapshot's parent (same key, size and ETag)
	// and taken over from it without a download.
	Downloaded      int64 `json:"downloaded"`
	BytesDownloaded int64 `json:"bytes_downloaded"`
	Reused          int64 `json:"reused"`
	// Vanished counts objects deleted between the listing and their read
	// (left out).
	Vanished int64 `json:"vanished"`
	// Versioning is the bucket's versioning status when it is not off
	// ("Enabled", "Suspended", "unknown"); only the current version of
	// each object is backed up, as Note says.
	Versioning string `json:"versioning,omitempty"`
	Note       string `json:"note,omitempty"`
	// Tags is false when the store does not support object tagging.
	Tags bool `json:"tags"`
}

// SnapshotInfo decodes what a bucket snapshot records beside its tree.
func SnapshotInfo(s *repo.Snapshot) (*Info, error) {
	if s.Kind != string(KindName) {
		return nil, fmt.Errorf("snapshot %s is of kind %s, not %s", s.ID.Short(), s.Kind, KindName)
	}
	var info Info
	if len(s.Extra) > 0 {
		if err := json.Unmarshal(s.Extra, &info); err != nil {
			return nil, fmt.Errorf("snapshot %s: details: %v: %w", s.ID.Short(), err, repo.ErrCorrupt)
		}
	}
	return &info, nil
}

// entry is one object of a snapshot: its relative key, node and record.
type entry struct {
	key  string
	node *repo.Node
	obj  *Object
}

// snapReader yields a snapshot's objects in key order, reading its tree
// and its metadata side by side; memory stays bounded whatever the size
// of the snapshot.
type snapReader struct {
	snap *repo.Snapshot
	tree *repo.TreeReader
	meta *json.Decoder
	done bool
}

// openSnapshot starts reading snapshot s through idx (which must hold its
// tree and metadata blobs).
func openSnapshot(ctx context.Context, r *repo.Repository, idx *repo.Index, s *repo.Snapshot, src *contentSource) (*snapReader, error) {
	if s.Kind != string(KindName) {
		return nil, fmt.Errorf("snapshot %s is of kind %s, not %s", s.ID.Short(), s.Kind, KindName)
	}
	// The metadata node is the last of the tree; the tree is read once
	// to find it (tree blobs are small next to the content).
	var meta *repo.Node
	err := r.WalkTree(ctx, idx, s.Tree, func(n *repo.Node) error {
		if n.Path == metaNode {
			meta = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", s.ID.Short(), err)
	}
	if meta == nil {
		return nil, fmt.Errorf("snapshot %s has no %s: %w", s.ID.Short(), metaNode, repo.ErrCorrupt)
	}
	rd := src.open(ctx, meta)
	return &snapReader{snap: s, tree: r.NewTreeReader(idx, s.Tree), meta: json.NewDecoder(bufio.NewReaderSize(rd, 256<<10))}, nil
}

// next returns the next object, or nil at the end.
func (sr *snapReader) next(ctx context.Context) (*entry, error) {
	if sr.done {
		return nil, nil
	}
	n := sr.tree.Next(ctx)
	if n == nil {
		if err := sr.tree.Err(); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", sr.snap.ID.Short(), err)
		}
		return nil, fmt.Errorf("snapshot %s: the tree ends without %s: %w", sr.snap.ID.Short(), metaNode, repo.ErrCorrupt)
	}
	if n.Path == metaNode {
		sr.done = true
		var extra Object
		switch err := sr.meta.Decode(&extra); {
		case err == nil:
			return nil, sr.corrupt("%s holds more records than the tree has objects", metaNode)
		case !errors.Is(err, io.EOF):
			return nil, fmt.Errorf("snapshot %s: %s: %w", sr.snap.ID.Short(), metaNode, err)
		}
		return nil, nil
	}
	k, err := keyOf(n.Path)
	if err != nil || n.Type != repo.NodeFile {
		return nil, sr.corrupt("node %q is not an object (%v)", n.Path, err)
	}
	var o Object
	if err := sr.meta.Decode(&o); err != nil {
		if errors.Is(err, repo.ErrCorrupt) || errors.Is(err, repo.ErrMissing) {
			return nil, fmt.Errorf("snapshot %s: %s: %w", sr.snap.ID.Short(), metaNode, err)
		}
		return nil, sr.corrupt("%s: record of %s: %v", metaNode, quoteKey(k), err)
	}
	if mk, err := o.key(); err != nil || mk != k || o.Size != n.Size {
		return nil, sr.corrupt("%s: the record of %s does not match the tree (%s, %d bytes)", metaNode, quoteKey(k), quoteKey(mk), o.Size)
	}
	return &entry{key: k, node: n, obj: &o}, nil
}

func (sr *snapReader) corrupt(format string, args ...any) error {
	return fmt.Errorf("snapshot %s: %s: %w", sr.snap.ID.Short(), fmt.Sprintf(format, args...), repo.ErrCorrupt)
}
