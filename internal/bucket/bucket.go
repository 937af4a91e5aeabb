// Package bucket backs up S3 and S3-compatible buckets, or a prefix of
// one (the bucket asset kind): the objects platforms keep their users'
// uploads and documents in, with their content type, headers, user
// metadata and tags.
//
// A snapshot holds one file node per object (keys mapped to tree paths
// by an escaping that keeps their order, keys.go) and, after them, one
// JSON line per object with its metadata and the SHA-256 of its content
// (meta.go). A backup lists the bucket in key order and walks the parent
// snapshot beside the listing: an object whose key, size and ETag did not
// change is not downloaded again, its node is taken over from the parent.
// Restore writes the objects to a directory (with the metadata beside
// them) or to a bucket; the drill restores into a temporary prefix of the
// source bucket and reads every object back against the snapshot.
//
// docs/bucket.md is the operator's guide.
package bucket

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/lifeboat-dr/lifeboat/internal/asset"
	"github.com/lifeboat-dr/lifeboat/internal/lifeboat"
	"github.com/lifeboat-dr/lifeboat/internal/policy"
	s3store "github.com/lifeboat-dr/lifeboat/internal/storage/s3"
)

// KindName is the policy's `kind:` for buckets, and the kind recorded in
// their snapshots.
const KindName lifeboat.AssetKind = "bucket"

// NewKind is the bucket kind.
func NewKind() asset.Kind { return kind{} }

type kind struct{}

var (
	_ asset.Differ     = kind{}
	_ asset.Configurer = kind{}
)

func (kind) Name() lifeboat.AssetKind { return KindName }

// Config is a bucket asset's own part of the policy.
type Config struct {
	// Location is where the objects are: the bucket, the prefix, and how
	// to reach the store.
	Location Location
	// AccessKey and SecretKey, when set, are the credentials; else the
	// environment, the shared profile or the instance role give them.
	AccessKey, SecretKey policy.Secret

	// wrap, in tests, wraps the HTTP transport of every client made from
	// this configuration (to count or break requests).
	wrap func(http.RoundTripper) http.RoundTripper
}

// Location is a bucket, or a prefix of one, and how to reach its store.
type Location struct {
	Bucket string
	// Prefix is "" (the whole bucket) or ends in "/": the asset is every
	// key that starts with it. s3://b/p and s3://b/p/ both give "p/".
	Prefix    string
	Endpoint  string // "" for AWS
	Region    string // "" for us-east-1
	PathStyle bool
	CAFile    string // PEM file of certificate authorities trusted besides the system's
}

// String writes the location as a URL (no credentials are in it).
func (l Location) String() string {
	u := url.URL{Scheme: "s3", Host: l.Bucket, Path: "/" + l.Prefix}
	q := url.Values{}
	if l.Endpoint != "" {
		q.Set("endpoint", l.Endpoint)
	}
	if l.Region != "" {
		q.Set("region", l.Region)
	}
	if l.PathStyle {
		q.Set("path_style", "true")
	}
	if l.CAFile != "" {
		q.Set("ca_file", l.CAFile)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Where is the location for messages: s3://bucket/prefix.
func (l Location) Where() string { return "s3://" + l.Bucket + "/" + l.Prefix }

// ParseLocation reads s3://bucket/prefix?endpoint=...&region=...&path_style=true&ca_file=...,
// the form repository URLs take (internal/storage/s3), except that the
// prefix may be any key prefix (percent-encode what a URL cannot hold).
func ParseLocation(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("bucket url: %w", err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" {
		return Location{}, fmt.Errorf("bucket url %q: want s3://bucket/prefix?endpoint=...", raw)
	}
	// The parameters are those of a repository URL, read by the same code.
	o, err := s3store.ParseURL("s3://" + u.Host + "?" + u.RawQuery)
	if err != nil {
		msg := err.Error()
		if _, after, ok := strings.Cut(msg, `": `); ok {
			msg = after // the message names the URL it was given, not raw
		}
		return Location{}, fmt.Errorf("bucket url %q: %s", raw, msg)
	}
	l := Location{Bucket: u.Host, Prefix: strings.TrimPrefix(u.Path, "/"), Endpoint: o.Endpoint, Region: o.Region,
		PathStyle: o.PathStyle, CAFile: o.CAFile}
	if l.Prefix != "" && !strings.HasSuffix(l.Prefix, "/") {
		l.Prefix += "/"
	}
	if strings.ContainsRune(l.Prefix, 0) {
		return Location{}, fmt.Errorf("bucket url %q: the prefix holds a NUL byte", raw)
	}
	return l, nil
}

// withDefaults fills what a target URL leaves out from the asset's own
// location: a restore into another bucket of the same store needs only
// s3://other/prefix.
func (l Location) withDefaults(src Location, given url.Values) Location {
	if !given.Has("endpoint") {
		l.Endpoint = src.Endpoint
		if !given.Has("region") {
			l.Region = src.Region
		}
		if !given.Has("path_style") {
			l.PathStyle = src.PathStyle
		}
		if !given.Has("ca_file") {
			l.CAFile = src.CAFile
		}
	}
	return l
}

// ConfigKeys are the policy keys of a bucket asset beyond the shared ones.
func (kind) ConfigKeys() []string { return []string{"url", "access_key", "secret_key"} }

// DecodeConfig reads a bucket asset's keys.
func (kind) DecodeConfig(s *policy.Section) any {
	c := &Config{}
	switch raw := s.String("url"); {
	case !s.Has("url"):
		s.Errorf("", "a bucket asset needs url: s3://bucket/prefix?endpoint=...")
	case raw != "":
		l, err := ParseLocation(raw)
		if err != nil {
			s.Errorf("url", "%v", err)
		}
		c.Location = l
	}
	c.AccessKey, c.SecretKey = s.Secret("access_key"), s.Secret("secret_key")
	if s.Has("access_key") != s.Has("secret_key") {
		s.Errorf("secret_key", "access_key and secret_key go together: give both, or neither to use the environment or instance role")
	}
	return c
}

// configOf is the bucket configuration of an asset.
func configOf(a *policy.Asset) (*Config, error) {
	c, ok := a.Config.(*Config)
	if !ok || c == nil || c.Location.Bucket == "" {
		return nil, asset.Usagef("asset %s: no bucket url in the policy", a.Name)
	}
	return c, nil
}
