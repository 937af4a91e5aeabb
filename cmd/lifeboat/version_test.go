package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

// TestReadVersion: stamped values win; without them the toolchain's build
// information is used (a `go install …@version` build, a `go build` in a
// git checkout); what nothing records is "dev" and "unknown".
func TestReadVersion(t *testing.T) {
	t.Parallel()
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "-trimpath", Value: "true"}, {Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	platform := runtime.GOOS + "/" + runtime.GOARCH
	for _, tc := range []struct {
		name             string
		version, commit  string
		info             *debug.BuildInfo
		want             string
		wantModifiedFlag bool
	}{
		{"stamped release build", "1.2.0", "0123456789abcdef0123456789abcdef01234567",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}, Settings: vcs("ffff", "true")},
			"1.2.0 (commit 0123456789abcdef0123456789abcdef01234567, go1.26.8 " + platform + ")", false},
		{"go install at a version", "", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.0"}},
			"v1.2.0 (commit unknown, go1.26.8 " + platform + ")", false},
		{"go build in a modified checkout", "", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20260105050000-2807f6e1c0de+dirty"}, Settings: vcs("2807f6e1c0de", "true")},
			"v0.0.0-20260105050000-2807f6e1c0de+dirty (commit 2807f6e1c0de, modified, go1.26.8 " + platform + ")", true},
		{"go build -buildvcs=false", "", "",
			&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"dev (commit unknown, go1.26.8 " + platform + ")", false},
		{"no build information", "", "", nil,
			"dev (commit unknown, " + runtime.Version() + " " + platform + ")", false},
	} {
		b := readVersion(tc.version, tc.commit, tc.info)
		if got := b.String(); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		if b.Modified != tc.wantModifiedFlag {
			t.Errorf("%s: modified = %v, want %v", tc.name, b.Modified, tc.wantModifiedFlag)
		}
	}
}
