package testenv

import "testing"

func TestSkipDisallowed(t *testing.T) {
	for _, tc := range []struct {
		ci, disallow string
		want         bool
	}{
		{"", "", false},
		{"true", "", true},
		{"1", "", true},
		{"false", "", false},
		{"", "1", true},
		{"", "0", false},
	} {
		t.Setenv("CI", tc.ci)
		t.Setenv(EnvDisallowSkip, tc.disallow)
		if got := SkipDisallowed(); got != tc.want {
			t.Errorf("CI=%q %s=%q: SkipDisallowed = %v, want %v", tc.ci, EnvDisallowSkip, tc.disallow, got, tc.want)
		}
	}
}
