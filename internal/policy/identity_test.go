package policy

import (
	"strings"
	"testing"
)

func TestIdentityKeys(t *testing.T) {
	t.Parallel()
	repo := func(extra string) string {
		return "repositories:\n  - name: primary\n    url: file:///srv/repo\n    key_file: /etc/lifeboat/repo.key\n" + extra + assetOK
	}
	p, err := parseText(t, repo("    identity_file: /etc/lifeboat/restore.identity\n    identity_key_file: restore.identity.key\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := p.Repositories[0]
	if r.IdentityFile != "/etc/lifeboat/restore.identity" || !strings.HasSuffix(r.IdentityKeyFile, "/restore.identity.key") || r.IdentityKeyFile[0] != '/' {
		t.Fatalf("identity keys read as %q, %q", r.IdentityFile, r.IdentityKeyFile)
	}
	p, err = parseText(t, repo("    identity_file: /etc/lifeboat/restore.identity\n    identity_passphrase: a long passphrase\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Repositories[0].IdentityPassphrase.Reveal() != "a long passphrase" {
		t.Fatal("identity_passphrase not read")
	}
	for name, extra := range map[string]string{
		"identity without what seals it": "    identity_file: /etc/lifeboat/restore.identity\n",
		"both seals":                     "    identity_file: /x\n    identity_key_file: /y\n    identity_passphrase: a long passphrase\n",
		"a seal without identity":        "    identity_key_file: /y\n",
	} {
		if _, err := parseText(t, repo(extra)); err == nil || !strings.Contains(err.Error(), "identity_file with exactly one of identity_passphrase or identity_key_file") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
