package storage_test

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/storage"
	"github.com/lifeboat-dr/lifeboat/internal/storage/fs"
	"github.com/lifeboat-dr/lifeboat/internal/storage/retry"
	"github.com/lifeboat-dr/lifeboat/internal/storage/storagetest"
)

func TestIsPermanent(t *testing.T) {
	plain := errors.New("connection reset")
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", plain, false},
		{"wrapped plain", fmt.Errorf("put x: %w", plain), false},
		{"deadline", context.DeadlineExceeded, false},
		{"permanent", storage.Permanent(plain), true},
		{"wrapped permanent", fmt.Errorf("put x: %w", storage.Permanent(plain)), true},
		{"not found", fmt.Errorf("get x: %w", storage.ErrNotFound), true},
		{"exists", fmt.Errorf("put x: %w", storage.ErrExists), true},
		{"canceled", fmt.Errorf("put x: %w", context.Canceled), true},
		{"closed", fmt.Errorf("put x: %w", storage.ErrClosed), true},
	} {
		if got := storage.IsPermanent(tc.err); got != tc.want {
			t.Errorf("IsPermanent(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if storage.Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	err := storage.Permanent(plain)
	if !errors.Is(err, plain) || err.Error() != plain.Error() {
		t.Errorf("Permanent hides the error it wraps: %v", err)
	}
}

func TestValidateName(t *testing.T) {
	valid := []string{
		"a", "config", "data/ab/" + strings.Repeat("f", 64), "a..b", "a.", "x/y/z", "A-Z_a.z-0_9",
		strings.Repeat("a", storage.MaxNameLength),
	}
	for _, name := range valid {
		if err := storage.ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", name, err)
		}
	}
	invalid := append([]string{strings.Repeat("a", storage.MaxNameLength+1)}, storagetest.InvalidNames...)
	for _, name := range invalid {
		err := storage.ValidateName(name)
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", name)
			continue
		}
		if !storage.IsPermanent(err) {
			t.Errorf("ValidateName(%q): error not permanent", name)
		}
	}
}

// FuzzValidateName checks that every accepted name is one a directory
// backend can use safely: local, already clean, free of hidden segments.
func FuzzValidateName(f *testing.F) {
	for _, s := range append([]string{"a", "data/ab/cd", "a..b"}, storagetest.InvalidNames...) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if storage.ValidateName(name) != nil {
			return
		}
		if !filepath.IsLocal(name) || path.Clean(name) != name || !strings.HasPrefix(path.Join("/root", name), "/root/") {
			t.Errorf("accepted name %q escapes or is unclean", name)
		}
		for seg := range strings.SplitSeq(name, "/") {
			if seg == "" || seg[0] == '.' {
				t.Errorf("accepted name %q has segment %q", name, seg)
			}
		}
		if strings.ContainsAny(name, "\\ \t\n\x00:") || len(name) > storage.MaxNameLength {
			t.Errorf("accepted name %q has a forbidden character or length", name)
		}
	})
}

func TestReadAll(t *testing.T) {
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := be.Put(ctx, "index/1", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	data, err := storage.ReadAll(ctx, be, "index/1")
	if err != nil || string(data) != "hello" {
		t.Errorf("ReadAll = %q, %v; want hello", data, err)
	}
	if _, err := storage.ReadAll(ctx, be, "index/2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ReadAll of missing object: err = %v, want ErrNotFound", err)
	}
}

// TestCapability finds an optional capability through decorators that
// expose what they wrap, and reports its absence.
func TestCapability(t *testing.T) {
	t.Parallel()
	be, err := fs.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	wrapped := retry.New(&storagetest.HoldingBackend{Backend: be}, retry.Options{})
	if _, ok := storage.Capability[storage.Temporaries](wrapped); ok {
		t.Error("found Temporaries through a decorator that hides what it wraps")
	}
	tl, ok := storage.Capability[storage.Temporaries](retry.New(be, retry.Options{}))
	if !ok {
		t.Fatal("Temporaries of fs not found through retry")
	}
	if err := tl.ListTemp(t.Context(), func(oi storage.ObjectInfo) error {
		t.Errorf("temporary file in a new directory: %+v", oi)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := storage.Capability[storage.Retainer](retry.New(be, retry.Options{})); ok {
		t.Error("fs reported as a Retainer")
	}
}
