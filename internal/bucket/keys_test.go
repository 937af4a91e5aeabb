package bucket

import (
	"slices"
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/repo"
)

// trickyKeys are keys a bucket may hold that no file system path would:
// what the tree and directory mappings must carry safely and reversibly.
var trickyKeys = []string{
	"", "a", "a b", "a-", "a.b", "a/b", "a/", "a//b", "/lead", "//", "/", ".", "..", "../up", "a/../b", "a/./b",
	"trail/", "dir/sub/", "%", "%25", "a%", "%2E", "x\x00y", "\x01", "\xff\xfe", "日本/ü.txt", ".lifeboat-bucket-metadata.jsonl",
	".lifeboat-x", "a/.lifeboat-x", strings.Repeat("z", 300), "0", "00", "/0", "~",
}

func TestTreePathRoundTripAndOrder(t *testing.T) {
	keys := slices.Clone(trickyKeys)
	slices.Sort(keys)
	var last string
	for i, k := range keys {
		p := treePath(k)
		if err := repo.CheckPath(p); err != nil {
			t.Errorf("key %q: tree path %q refused: %v", k, p, err)
		}
		got, err := keyOf(p)
		if err != nil || got != k {
			t.Errorf("key %q: tree path %q reads back as %q, %v", k, p, got, err)
		}
		if i > 0 && p <= last {
			t.Errorf("key %q sorts after %q, but its tree path %q does not sort after %q", k, keys[i-1], p, last)
		}
		last = p
	}
	if last >= metaNode {
		t.Errorf("tree path %q does not sort before %q", last, metaNode)
	}
	for _, bad := range []string{"data/", "data/a%2", "data/%41", "data/a b", "data/%zz", "other/x", "data/a/b"} {
		if k, err := keyOf(bad); err == nil {
			t.Errorf("keyOf(%q) = %q, want an error", bad, k)
		}
	}
}

func FuzzTreePath(f *testing.F) {
	for i := 1; i < len(trickyKeys); i++ {
		f.Add(trickyKeys[i-1], trickyKeys[i])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		pa, pb := treePath(a), treePath(b)
		if err := repo.CheckPath(pa); err != nil {
			t.Fatalf("key %q: tree path %q refused: %v", a, pa, err)
		}
		if got, err := keyOf(pa); err != nil || got != a {
			t.Fatalf("key %q: tree path %q reads back as %q, %v", a, pa, got, err)
		}
		if strings.Compare(a, b) != strings.Compare(pa, pb) {
			t.Fatalf("keys %q, %q compare %d; tree paths %q, %q compare %d", a, b, strings.Compare(a, b), pa, pb, strings.Compare(pa, pb))
		}
	})
}

func FuzzKeyOf(f *testing.F) {
	f.Add("data/a%2Fb")
	f.Add("data")
	f.Fuzz(func(t *testing.T, p string) {
		k, err := keyOf(p)
		if err == nil && treePath(k) != p {
			t.Fatalf("keyOf(%q) = %q, whose tree path is %q", p, k, treePath(k))
		}
	})
}

func TestLocalPathRoundTrip(t *testing.T) {
	dirs := map[string]bool{}
	for _, k := range trickyKeys {
		localDirs(k, dirs)
	}
	files := map[string]string{}
	for _, k := range trickyKeys {
		p, err := localPath(k, dirs)
		if k == strings.Repeat("z", 300) {
			if err == nil {
				t.Errorf("a 300-byte element was accepted as a file name")
			}
			continue
		}
		if err != nil {
			t.Errorf("key %q: %v", k, err)
			continue
		}
		if other, dup := files[p]; dup {
			t.Errorf("keys %q and %q both land at %q", k, other, p)
		}
		files[p] = k
		if dirs[p] {
			t.Errorf("key %q lands at %q, a directory", k, p)
		}
		for _, el := range strings.Split(p, "/") {
			if el == "" || el == "." || el == ".." || strings.ContainsRune(el, 0) {
				t.Errorf("key %q: unsafe element %q in %q", k, el, p)
			}
		}
		if p == sidecarName {
			t.Errorf("key %q takes the metadata file's name", k)
		}
		got, err := keyOfLocal(p)
		if err != nil || got != k {
			t.Errorf("key %q: %q reads back as %q, %v", k, p, got, err)
		}
	}
	// The clash rule: "a" steps aside for the directory "a/".
	if p, _ := localPath("a", dirs); p != "a%" {
		t.Errorf(`"a" lands at %q, want "a%%"`, p)
	}
}

func TestParseLocation(t *testing.T) {
	cases := []struct {
		url  string
		want Location
		err  string
	}{
		{url: "s3://uploads/prod/?endpoint=https://s3.example:9000&region=eu-north-1&path_style=true",
			want: Location{Bucket: "uploads", Prefix: "prod/", Endpoint: "https://s3.example:9000", Region: "eu-north-1", PathStyle: true}},
		{url: "s3://uploads/prod", want: Location{Bucket: "uploads", Prefix: "prod/"}},
		{url: "s3://uploads", want: Location{Bucket: "uploads"}},
		{url: "s3://uploads/", want: Location{Bucket: "uploads"}},
		{url: "s3://uploads/user%20files/2024", want: Location{Bucket: "uploads", Prefix: "user files/2024/"}},
		{url: "s3://uploads//odd", want: Location{Bucket: "uploads", Prefix: "/odd/"}},
		{url: "s3://uploads/p?ca_file=/etc/ca.pem", want: Location{Bucket: "uploads", Prefix: "p/", CAFile: "/etc/ca.pem"}},
		{url: "s3://uploads/p?regoin=x", err: `unknown parameter "regoin"`},
		{url: "s3://uploads/p?path_style=maybe", err: "path_style"},
		{url: "file:///x", err: "want s3://bucket"},
		{url: "s3:///x", err: "want s3://bucket"},
		{url: "s3://k:s@uploads/x", err: "want s3://bucket"},
	}
	for _, tc := range cases {
		got, err := ParseLocation(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLocation(%q) = %+v, %v; want an error containing %q", tc.url, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", tc.url, got, err, tc.want)
			continue
		}
		again, err := ParseLocation(got.String())
		if err != nil || again != got {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestUnderPath(t *testing.T) {
	for _, tc := range []struct {
		key, sel string
		want     bool
	}{
		{"a/b", "", true}, {"a/b", "a", true}, {"a/b", "a/", true}, {"a", "a", true}, {"ab", "a", false},
		{"a", "a/", false}, {"a/", "a/", true}, {"a-b/c", "a", false},
	} {
		if got := underPath(tc.key, tc.sel); got != tc.want {
			t.Errorf("underPath(%q, %q) = %v", tc.key, tc.sel, got)
		}
	}
}
