package bucket

import (
	"strings"
	"testing"

	"github.com/lifeboat-dr/lifeboat/internal/policy"
)

const policyHead = `
repositories:
  - name: primary
    url: file:///var/lib/lifeboat/repo
    key_file: /etc/lifeboat/repo.key
assets:
  - name: uploads
    kind: bucket
    repositories: [primary]
`

func parsePolicy(t *testing.T, keys string) (*policy.Policy, error) {
	t.Helper()
	return policy.Parse([]byte(policyHead+keys), "test.yaml", policy.Kinds{KindName: kind{}})
}

func TestDecodeConfig(t *testing.T) {
	t.Setenv("UPLOADS_KEY", "AKIAEXAMPLE")
	t.Setenv("UPLOADS_SECRET", "s3cr3t")
	p, err := parsePolicy(t, `    url: s3://uploads/prod/?endpoint=https://s3.example:9000&region=eu-north-1&path_style=true
    access_key: ${UPLOADS_KEY}
    secret_key: ${UPLOADS_SECRET}
`)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := p.Assets[0].Config.(*Config)
	if !ok {
		t.Fatalf("config %T", p.Assets[0].Config)
	}
	want := Location{Bucket: "uploads", Prefix: "prod/", Endpoint: "https://s3.example:9000", Region: "eu-north-1", PathStyle: true}
	if c.Location != want || c.AccessKey.Reveal() != "AKIAEXAMPLE" || c.SecretKey.Reveal() != "s3cr3t" {
		t.Errorf("config %+v", c)
	}
	for _, tc := range []struct{ keys, err string }{
		{"", "needs url"},
		{"    url: s3://uploads/p?regoin=x\n", `test.yaml:10: assets[0].url: bucket url "s3://uploads/p?regoin=x": unknown parameter "regoin"`},
		{"    url: https://uploads\n", "want s3://bucket"},
		{"    url: s3://uploads\n    access_key: x\n", "access_key and secret_key go together"},
		{"    url: s3://uploads\n    paths: [/x]\n", "paths"},
		{"    url: s3://uploads\n    acces_key: x\n", `did you mean "access_key"`},
	} {
		_, err := parsePolicy(t, tc.keys)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("keys %q: %v, want an error containing %q", tc.keys, err, tc.err)
		}
	}
}
