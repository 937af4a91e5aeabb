package policy

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents to the parser. It must never panic,
// must return either a policy or an error made only of *FieldErrors, and a
// policy it returns must pass Validate and resolve every reference.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("testdata/lifeboat.yaml"); err == nil {
		f.Add(string(data))
	} else {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"",
		repoOK + assetOK,
		repoOK + assetOK + "tiers:\n  gold: {rpo: 1w2d, rto: 90m}\n",
		"repositories: [{name: a, url: 'file:///a', passphrase: '$${X}${LIFEBOAT_PASSPHRASE}'}]\n",
		"a: &x [*x]\n",
		"repositories: &r [{name: a, url: 'file:///a', key_file: k}]\nassets: [{name: b, kind: postgres, pgdata: /p, dsn: d, repositories: [a]}]\n",
		"assets:\n  - <<: {name: a}\n    kind: postgres\n",
		"? [a]\n: b\n",
		"tiers: {? [x] : {rpo: 1m}}\n",
		"---\n---\n",
		"repositories:\n  - name: r\n    name: s\n",
		"!!binary aGVsbG8=\n",
		"tiers:\n  x: !!map {rpo: !!str 5m}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, src string) {
		p, err := parse([]byte(src), "fuzz.yaml", "/etc/lifeboat", lookupIn(testEnv), testKinds)
		if err != nil {
			if p != nil {
				t.Fatal("policy returned with an error")
			}
			var joined interface{ Unwrap() []error }
			errs := []error{err}
			if errors.As(err, &joined) {
				errs = joined.Unwrap()
			}
			for _, e := range errs {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error %q is %T, not *FieldError", e, e)
				}
				if !strings.HasPrefix(fe.Error(), "fuzz.yaml") {
					t.Fatalf("error %q does not name the file", fe)
				}
			}
			if strings.Contains(err.Error(), testEnv["LIFEBOAT_PASSPHRASE"]) {
				t.Fatalf("error leaks an expanded secret: %v", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("parsed policy fails Validate: %v", err)
		}
		for i := range p.Assets {
			if _, err := p.AssetRepositories(&p.Assets[i]); err != nil {
				t.Fatalf("parsed policy has a dangling reference: %v", err)
			}
			if tier := p.Assets[i].Tier; tier != "" {
				if _, ok := p.Tiers[tier]; !ok {
					t.Fatalf("asset tier %q is not defined", tier)
				}
			}
		}
	})
}
