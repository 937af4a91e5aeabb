package bucket

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/evidence"
	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// Drill restores the snapshot into a temporary prefix of the source
// bucket, <prefix>.lifeboat-drill-<id>/, where every object is checked
// twice: against the SHA-256 recorded at backup time as it comes out of
// the repository (before it is put), and read back from the bucket
// (content, headers, user metadata, tags). The prefix, every version of
// it included, is deleted after the drill.
func (kind) Drill(ctx context.Context, d asset.Drill) error {
	cfg, err := configOf(d.Asset())
	if err != nil {
		return err
	}
	s, err := d.PickSnapshot(ctx)
	if err != nil {
		return err
	}
	d.Phase(evidence.PhaseFetch)
	loc := cfg.Location
	loc.Prefix = drillPrefix(cfg.Location.Prefix, time.Now())
	cl, err := newClient(ctx, loc, cfg)
	if err != nil {
		return err
	}
	d.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if n, err := cl.emptyPrefix(cctx, loc.Prefix); err != nil {
			d.Log().Warn("drill: the temporary prefix could not be deleted; delete it by hand", "prefix", loc.Where(), "deleted", n, "err", err)
		}
		cl.close()
	})
	start := time.Now()
	st, err := putObjects(ctx, d.Repo(), s, cl, restoreOptions{workers: d.Workers()})
	d.Phase(evidence.PhaseWrite)
	c := asset.IntegrityCheck{Name: "every object restored from the repository with the SHA-256 recorded at backup",
		Seconds: time.Since(start).Seconds(), Passed: err == nil}
	if err != nil {
		c.Detail = oneLine(err.Error())
		d.Integrity(c)
		return err
	}
	c.Got = fmt.Sprintf("%d objects, %d bytes", st.objects, st.bytes)
	d.Integrity(c)
	d.Report().Bytes += st.bytes
	start = time.Now()
	rb, err := readBack(ctx, d.Repo(), s, cl, d.Workers())
	if err != nil {
		d.Integrity(asset.IntegrityCheck{Name: "every object read back from " + loc.Where() + " as recorded", Detail: oneLine(err.Error()),
			Seconds: time.Since(start).Seconds()})
		return err
	}
	c = asset.IntegrityCheck{Name: "every object read back from " + loc.Where() + " as recorded (SHA-256, headers, user metadata, tags)",
		Expect: fmt.Sprintf("%d objects as recorded", rb.want), Seconds: time.Since(start).Seconds(), Passed: len(rb.problems) == 0}
	if c.Passed {
		c.Got = fmt.Sprintf("%d objects as recorded, %d bytes", rb.ok, rb.bytes)
	} else {
		c.Got = fmt.Sprintf("%d objects as recorded, %d differ", rb.ok, rb.bad)
		c.Detail = strings.Join(rb.problems, "; ")
	}
	d.Integrity(c)
	d.Phase(evidence.PhaseChecks)
	return nil
}

// drillPrefix is the temporary prefix a drill of the asset with prefix p
// restores into, at time t.
func drillPrefix(p string, t time.Time) string {
	var b [4]byte
	rand.Read(b[:])
	return strings.TrimSuffix(p, "/") + drillMark + t.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:]) + "/"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}

// readBackResult is what reading a restored prefix back found.
type readBackResult struct {
	want, ok, bad int64
	bytes         int64
	problems      []string // the first maxProblems
}

const maxProblems = 10

func (r *readBackResult) problem(mu *sync.Mutex, format string, args ...any) {
	mu.Lock()
	defer mu.Unlock()
	r.bad++
	if len(r.problems) < maxProblems {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	} else if len(r.problems) == maxProblems {
		r.problems = append(r.problems, "...")
	}
}

// readBack compares what cl's prefix holds with snapshot s: every object
// there, none more, each with the recorded content and metadata.
func readBack(ctx context.Context, r *repo.Repository, s *repo.Snapshot, cl *client, workers int) (*readBackResult, error) {
	if workers <= 0 {
		workers = defaultWorkers
	}
	idx, err := r.LoadIndex(ctx, nil)
	if err != nil {
		return nil, err
	}
	src := newContentSource(ctx, r, idx, 1)
	defer src.close()
	sr, err := openSnapshot(ctx, r, idx, s, src)
	if err != nil {
		return nil, err
	}
	res := &readBackResult{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan *entry, workers)
	g.Go(func() error {
		defer close(work)
		var pending *entry
		nextEntry := func() error {
			var err error
			pending, err = sr.next(gctx)
			if pending != nil {
				res.want++
			}
			return err
		}
		if err := nextEntry(); err != nil {
			return err
		}
		err := cl.list(gctx, cl.loc.Prefix, nil, func(l listed) error {
			for pending != nil && pending.key < l.Key {
				res.problem(&mu, "%s missing", quoteKey(pending.key))
				if err := nextEntry(); err != nil {
					return err
				}
			}
			if pending == nil || pending.key != l.Key {
				res.problem(&mu, "%s not in the snapshot", quoteKey(l.Key))
				return nil
			}
			select {
			case work <- pending:
			case <-gctx.Done():
				return gctx.Err()
			}
			return nextEntry()
		})
		if err != nil {
			return err
		}
		for ; pending != nil; err = nextEntry() {
			if err != nil {
				return err
			}
			res.problem(&mu, "%s missing", quoteKey(pending.key))
		}
		return err
	})
	for range workers {
		g.Go(func() error {
			for e := range work {
				what, err := cl.compare(gctx, e)
				if err != nil {
					return err
				}
				if len(what) > 0 {
					res.problem(&mu, "%s (%s)", quoteKey(e.key), strings.Join(what, ", "))
					continue
				}
				mu.Lock()
				res.ok++
				res.bytes += e.obj.Size
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return res, nil
}

// compare reads the object of e from the client's prefix and lists what
// differs from the record: "content", "missing", the names of the headers,
// "metadata", "tags".
func (c *client) compare(ctx context.Context, e *entry) ([]string, error) {
	var got Object
	body, tagCount, err := c.get(ctx, e.key, &got)
	if errors.Is(err, errVanished) {
		return []string{"missing"}, nil
	}
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(h, body)
	body.Close()
	if err != nil {
		return nil, fmt.Errorf("read back %s: %w", quoteKey(e.key), err)
	}
	var what []string
	if n != e.obj.Size || hex.EncodeToString(h.Sum(nil)) != e.obj.SHA256 {
		what = append(what, "content")
	}
	what = append(what, metaDiff(e.obj, &got)...)
	if tagCount != 0 || len(e.obj.Tags) > 0 {
		tags, err := c.tags(ctx, e.key)
		switch {
		case errors.Is(err, errNoTagging):
		case err != nil:
			return nil, err
		case !maps.Equal(tags, e.obj.Tags) && (len(tags) > 0 || len(e.obj.Tags) > 0):
			what = append(what, "tags")
		}
	}
	return what, nil
}

// metaDiff names the headers and user metadata that differ between a
// record and an object read back. A store that fills in a content type
// the original did not have is not a difference.
func metaDiff(want, got *Object) []string {
	var what []string
	ct := got.ContentType
	if want.ContentType == "" && (ct == "binary/octet-stream" || ct == "application/octet-stream") {
		ct = ""
	}
	for _, f := range []struct {
		name      string
		want, got string
	}{
		{"content_type", want.ContentType, ct},
		{"content_encoding", want.ContentEncoding, got.ContentEncoding},
		{"content_disposition", want.ContentDisposition, got.ContentDisposition},
		{"content_language", want.ContentLanguage, got.ContentLanguage},
		{"cache_control", want.CacheControl, got.CacheControl},
		{"website_redirect_location", want.WebsiteRedirectLocation, got.WebsiteRedirectLocation},
	} {
		if f.want != f.got {
			what = append(what, f.name)
		}
	}
	if want.Expires != got.Expires {
		tw, err1 := http.ParseTime(want.Expires)
		tg, err2 := http.ParseTime(got.Expires)
		if err1 != nil || err2 != nil || !tw.Equal(tg) {
			what = append(what, "expires")
		}
	}
	if !maps.Equal(want.Metadata, got.Metadata) && (len(want.Metadata) > 0 || len(got.Metadata) > 0) {
		what = append(what, "metadata")
	}
	return what
}
