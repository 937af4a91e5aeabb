package retry_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
)

// flakyVersions is a backend with versions whose version calls fail
// transiently at first, as a dropped connection would; the listing fails
// once halfway. (The s3 backend's own versions are tested against MinIO.)
type flakyVersions struct {
	storage.Backend
	versions []storage.Version

	mu       sync.Mutex
	calls    map[string]int
	listings int
}

func (f *flakyVersions) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[op]++
	if f.calls[op] == 1 {
		return errTransient
	}
	return nil
}

func (f *flakyVersions) Versioning(context.Context) (storage.Versioning, error) {
	if err := f.fail("versioning"); err != nil {
		return "", err
	}
	return storage.VersioningEnabled, nil
}

func (f *flakyVersions) ListVersions(_ context.Context, _ string, fn func(storage.Version) error) error {
	f.mu.Lock()
	f.listings++
	first := f.listings == 1
	f.mu.Unlock()
	for i, v := range f.versions {
		if first && i == 2 {
			return errTransient
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

func (f *flakyVersions) GetVersion(_ context.Context, name, id string) (io.ReadCloser, error) {
	if err := f.fail("get"); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader(name + "@" + id)), nil
}

func (f *flakyVersions) GetVersionRange(ctx context.Context, name, id string, _, _ int64) (io.ReadCloser, error) {
	return f.GetVersion(ctx, name, id)
}

func (f *flakyVersions) RestoreVersion(_ context.Context, _, _ string) error {
	if err := f.fail("restore"); err != nil {
		return err
	}
	return storage.Permanent(errors.New("refused (injected)"))
}

// withRetention adds retention, as the s3 backend has both.
type withRetention struct{ *flakyVersions }

func (withRetention) Retention(context.Context, string) (time.Time, string, error) {
	return time.Time{}, "", nil
}

func (withRetention) ExtendRetention(context.Context, string, time.Time) error { return nil }

// TestVersionsForwarded: the decorator keeps the Versioned capability of
// what it wraps, with and without retention, retries its calls and
// resumes a broken listing without repeating a version; a backend without
// versions does not gain them.
func TestVersionsForwarded(t *testing.T) {
	t.Parallel()
	if _, ok := storage.Capability[storage.Versioned](retry.New(newFS(t), fastOptions())); ok {
		t.Fatal("a directory gained versions through the decorator")
	}
	vs := []storage.Version{{Name: "a", ID: "2", Latest: true}, {Name: "a", ID: "1"}, {Name: "b", ID: "3", Latest: true}, {Name: "c", ID: "4", Latest: true}}
	for _, tc := range []struct {
		name string
		be   func() storage.Backend
	}{
		{"versions", func() storage.Backend { return &flakyVersions{Backend: newFS(t), versions: vs} }},
		{"versions and retention", func() storage.Backend { return withRetention{&flakyVersions{Backend: newFS(t), versions: vs}} }},
	} {
		be := retry.New(tc.be(), fastOptions())
		v, ok := be.(storage.Versioned)
		if !ok {
			t.Fatalf("%s: the decorator hides Versioned", tc.name)
		}
		if _, ok := be.(storage.Retainer); ok != strings.Contains(tc.name, "retention") {
			t.Fatalf("%s: Retainer forwarded = %v", tc.name, ok)
		}
		ctx := t.Context()
		if st, err := v.Versioning(ctx); err != nil || st != storage.VersioningEnabled {
			t.Fatalf("%s: versioning = %q %v", tc.name, st, err)
		}
		var got []string
		if err := v.ListVersions(ctx, "", func(ver storage.Version) error { got = append(got, ver.ID); return nil }); err != nil {
			t.Fatalf("%s: list: %v", tc.name, err)
		}
		if strings.Join(got, ",") != "2,1,3,4" {
			t.Fatalf("%s: resumed listing gave %v", tc.name, got)
		}
		rc, err := v.GetVersion(ctx, "a", "1")
		if err != nil {
			t.Fatalf("%s: get version: %v", tc.name, err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if string(data) != "a@1" {
			t.Fatalf("%s: version read %q", tc.name, data)
		}
		if err := v.RestoreVersion(ctx, "a", "1"); err == nil || !storage.IsPermanent(err) || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("%s: restore: %v, want the permanent refusal after one retry", tc.name, err)
		}
	}
}
