package policy

import (
	"os"
	"strings"
	"testing"
)

func TestFleetKeys(t *testing.T) {
	t.Parallel()
	p, err := parseText(t, webBase)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := os.Hostname(); p.Fleet.Enabled() || p.Fleet.Host != h {
		t.Errorf("defaults: %+v, want no catalog and the host name %q", p.Fleet, h)
	}
	p, err = parse([]byte(webBase+"catalog: postgres://lifeboat:${CATALOG_PASSWORD}@catalog.internal/lifeboat?sslmode=verify-full\nhost: db-1\n"),
		"lifeboat.yaml", "/etc/lifeboat", lookupIn(map[string]string{"CATALOG_PASSWORD": "pw1"}), testKinds)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Fleet.Enabled() || p.Fleet.Host != "db-1" || !strings.Contains(p.Fleet.Catalog.Reveal(), ":pw1@") {
		t.Errorf("set: %+v", p.Fleet)
	}
	for _, c := range []struct{ src, want string }{
		{"catalog: mysql://u:hunter2@h/db", `lifeboat.yaml:3: catalog: catalog must be a postgres:// or postgresql:// URL`},
		{"catalog: 'postgres://u:hunter2@h:x/db'", "lifeboat.yaml:3: catalog: catalog is not a URL"},
		{"catalog: postgres://u:hunter2@h", "catalog names no database"},
		{"catalog: postgres://u:hunter2@/db", "catalog names no server"},
		{"catalog: 'postgres://u:hunter2@h/db?sslmode=maybe'", "sslmode maybe is not one of"},
		{"catalog: ''", "catalog is empty"},
		{"catalog: postgres://h/db\nhost: 'db 1'", "lifeboat.yaml:4: host: host must be a name without spaces"},
		{"catalog: 'postgres://u:${NOPE}@h/db'", "NOPE"},
	} {
		_, err := parse([]byte(webBase+c.src+"\n"), "lifeboat.yaml", "/etc/lifeboat", lookupIn(nil), testKinds)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: %v, want one line saying %q", c.src, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", c.src, err)
		}
	}
	// Printed, the policy hides the password.
	p, err = parseText(t, webBase+"catalog: postgres://u:hunter2@h/db\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join([]string{p.Fleet.Catalog.String()}, ""); strings.Contains(s, "hunter2") {
		t.Errorf("catalog prints as %q", s)
	}
}
