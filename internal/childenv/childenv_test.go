package childenv

import (
	"slices"
	"strings"
	"testing"
)

func names(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		out = append(out, k)
	}
	return out
}

func TestAllowLists(t *testing.T) {
	// t.Setenv: the process environment is the input.
	for k, v := range map[string]string{
		"PATH": "/usr/bin", "HOME": "/root", "LC_TIME": "C", "TZ": "UTC",
		"AWS_SECRET_ACCESS_KEY": "s3", "LIFEBOAT_TEST_PASSPHRASE": "p", "SLACK_TOKEN": "x",
		"PGHOST": "/run/postgresql", "PGPASSWORD": "pw", "DB_PASSWORD": "d",
		"LIFEBOAT_RESULT_FD": "3",
	} {
		t.Setenv(k, v)
	}
	base := names(Base("EXTRA=1"))
	for _, want := range []string{"PATH", "HOME", "LC_TIME", "TZ", "EXTRA"} {
		if !slices.Contains(base, want) {
			t.Errorf("Base lacks %s: %v", want, base)
		}
	}
	for _, not := range []string{"AWS_SECRET_ACCESS_KEY", "LIFEBOAT_TEST_PASSPHRASE", "SLACK_TOKEN", "PGHOST", "PGPASSWORD", "DB_PASSWORD"} {
		if slices.Contains(base, not) {
			t.Errorf("Base holds %s", not)
		}
	}
	pg := names(PG())
	if !slices.Contains(pg, "PGHOST") || slices.Contains(pg, "PGPASSWORD") || slices.Contains(pg, "AWS_SECRET_ACCESS_KEY") {
		t.Errorf("PG: %v", pg)
	}
	self := names(Self([]string{"DB_PASSWORD"}))
	for _, want := range []string{"DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "LIFEBOAT_TEST_PASSPHRASE"} {
		if !slices.Contains(self, want) {
			t.Errorf("Self lacks %s: %v", want, self)
		}
	}
	for _, not := range []string{"SLACK_TOKEN", "PGPASSWORD", "PATH", "HOME", "LIFEBOAT_RESULT_FD"} {
		if slices.Contains(self, not) {
			t.Errorf("Self holds %s", not)
		}
	}
	if Base() == nil {
		t.Error("Base is nil, which exec reads as the whole environment")
	}
}
