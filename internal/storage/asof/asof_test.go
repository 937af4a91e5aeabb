package asof_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/asof"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
)

// history is a store's versions, held in memory: the view's own rules
// are tested here, and against MinIO in internal/storage/s3.
type history struct {
	storage.Backend
	state    storage.Versioning
	versions []storage.Version // in the contract's order
}

func (h *history) Versioning(context.Context) (storage.Versioning, error) { return h.state, nil }

func (h *history) ListVersions(_ context.Context, prefix string, fn func(storage.Version) error) error {
	for _, v := range h.versions {
		if strings.HasPrefix(v.Name, prefix) {
			if err := fn(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *history) GetVersion(_ context.Context, name, id string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(name + "@" + id)), nil
}

func (h *history) GetVersionRange(ctx context.Context, name, id string, _, _ int64) (io.ReadCloser, error) {
	return h.GetVersion(ctx, name, id)
}

func (h *history) RestoreVersion(context.Context, string, string) error { return nil }

func TestView(t *testing.T) {
	t.Parallel()
	dir, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 2, 0, 0, 0, time.UTC)
	before, after := at.Add(-time.Hour), at.Add(time.Hour)
	h := &history{Backend: dir, state: storage.VersioningEnabled, versions: []storage.Version{
		{Name: "data/overwritten", ID: "junk", ModTime: after, Latest: true, Size: 4},
		{Name: "data/overwritten", ID: "genuine", ModTime: before, Size: 9},
		{Name: "data/stored-at-t", ID: "v", ModTime: at, Latest: true, Size: 1},
		{Name: "snapshots/deleted-later", ID: "marker", ModTime: after, Latest: true, DeleteMarker: true},
		{Name: "snapshots/deleted-later", ID: "s", ModTime: before, Size: 2},
		{Name: "snapshots/deleted-before", ID: "marker", ModTime: before, Latest: true, DeleteMarker: true},
		{Name: "snapshots/deleted-before", ID: "old", ModTime: before.Add(-time.Hour), Size: 3},
		{Name: "snapshots/new", ID: "n", ModTime: after, Latest: true, Size: 5},
	}}
	ctx := t.Context()
	view, err := asof.New(ctx, h, at)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	if err := view.List(ctx, "", func(oi storage.ObjectInfo) error {
		listed = append(listed, oi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(listed, " "); got != "data/overwritten data/stored-at-t snapshots/deleted-later" {
		t.Fatalf("listed as of the time: %s", got)
	}
	read := func(name string) string {
		t.Helper()
		data, err := storage.ReadAll(ctx, view, name)
		if err != nil {
			return err.Error()
		}
		return string(data)
	}
	if got := read("data/overwritten"); got != "data/overwritten@genuine" {
		t.Errorf("overwritten later: read %q", got)
	}
	if got := read("snapshots/deleted-later"); got != "snapshots/deleted-later@s" {
		t.Errorf("deleted later: read %q", got)
	}
	for _, name := range []string{"snapshots/deleted-before", "snapshots/new", "missing"} {
		if _, err := view.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s as of the time: %v, want ErrNotFound", name, err)
		}
	}
	if oi, err := view.Stat(ctx, "data/overwritten"); err != nil || oi.Size != 9 || !oi.ModTime.Equal(before) {
		t.Errorf("stat as of the time: %+v %v", oi, err)
	}
	v := view.(storage.Versioned)
	vers, err := storage.Versions(ctx, v, "data/overwritten")
	if err != nil || len(vers) != 1 || vers[0].ID != "genuine" || !vers[0].Latest {
		t.Errorf("versions as of the time: %+v %v", vers, err)
	}
	if _, err := v.GetVersion(ctx, "data/overwritten", "junk"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a version stored after the time: %v, want ErrNotFound", err)
	}
	for what, err := range map[string]error{
		"put":     view.Put(ctx, "x", strings.NewReader(""), 0),
		"delete":  view.Delete(ctx, "data/overwritten"),
		"restore": v.RestoreVersion(ctx, "data/overwritten", "genuine"),
	} {
		if !errors.Is(err, asof.ErrReadOnly) || !storage.IsPermanent(err) {
			t.Errorf("%s as of a time: %v, want a permanent ErrReadOnly", what, err)
		}
	}
	if !strings.HasSuffix(view.Location(), " as of 2026-11-23T02:00:00Z") {
		t.Errorf("location %q", view.Location())
	}

	h.state = storage.VersioningOff
	if _, err := asof.New(ctx, h, at); !errors.Is(err, asof.ErrNoVersions) {
		t.Errorf("versioning off: %v, want ErrNoVersions", err)
	}
	if _, err := asof.New(ctx, dir, at); !errors.Is(err, asof.ErrNoVersions) || strings.Contains(err.Error(), "\n") {
		t.Errorf("a directory: %v, want one line matching ErrNoVersions", err)
	}
}
