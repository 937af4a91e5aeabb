package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are stamped by release builds (scripts/release.sh,
// behind make build, make release and make deb):
//
//	-ldflags "-X main.version=1.2.0 -X main.commit=<full commit hash>"
//
// Left empty, buildVersion falls back on what the Go toolchain recorded.
var (
	version string
	commit  string
)

// buildVersion is what `lifeboat version` and `lifeboat --version` print.
type buildVersion struct {
	Version string
	Commit  string
	// Modified: the build came from a working tree with uncommitted
	// changes, so Commit alone does not say what is in it.
	Modified bool
	Go       string
	Platform string
}

func (b buildVersion) String() string {
	c := b.Commit
	if b.Modified {
		c += ", modified"
	}
	return fmt.Sprintf("%s (commit %s, %s %s)", b.Version, c, b.Go, b.Platform)
}

// currentVersion describes this binary.
func currentVersion() buildVersion {
	info, _ := debug.ReadBuildInfo()
	return readVersion(version, commit, info)
}

// readVersion prefers the stamped values; without them it uses the build
// information the Go toolchain embeds, so a `go install …@v1.2.0` build
// says v1.2.0 and a `go build` in a git checkout names its commit (and
// whether the tree was modified) rather than claiming a release. What
// neither source knows is "dev" and "unknown", never a guess.
func readVersion(stampedVersion, stampedCommit string, info *debug.BuildInfo) buildVersion {
	b := buildVersion{Version: stampedVersion, Commit: stampedCommit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info != nil {
		if info.GoVersion != "" {
			b.Go = info.GoVersion
		}
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		if b.Commit == "" {
			for _, s := range info.Settings {
				switch s.Key {
				case "vcs.revision":
					b.Commit = s.Value
				case "vcs.modified":
					b.Modified = s.Value == "true"
				}
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
		b.Modified = false
	}
	return b
}
