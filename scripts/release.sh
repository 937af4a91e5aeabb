#!/usr/bin/env bash
# Release builds of Lifeboat, stamped with their version and commit (`lifeboat version`). Behind
# make build, make release and make deb; the packaging test (packaging/deb_test.go) runs it too.
#
#   scripts/release.sh version        print VERSION=... and COMMIT=... of this checkout
#   scripts/release.sh binary OUT     the release binary at OUT: static (CGO off), -trimpath
#   scripts/release.sh dev OUT        the same stamp on a plain `go build` (make build, make demo),
#                                     which shares the build cache with go build ./... and the tests
#   scripts/release.sh deb OUTDIR     the Debian package (packaging/nfpm.yaml) in OUTDIR, holding the
#                                     release binary; prints its path
#
# VERSION and COMMIT in the environment override what git says (a build from a source tarball has
# no git). The version is one a Debian package can carry and that sorts in release order:
#   on a tag v1.2.0             1.2.0
#   3 commits after v1.2.0      1.2.0+3.g2807f6e71658
#   no tag yet                  0.0.0+20260105123000.g2807f6e71658   (the commit time, UTC)
#   uncommitted changes         ... .dirty / +dirty appended
# A tag v1.2.0-rc1 gives 1.2.0~rc1, which sorts before 1.2.0 as it should. GOARCH chooses the
# architecture (GOARCH=arm64 make deb); MAINTAINER the package's Maintainer field.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/local/go/bin

die() {
	echo "release: $*" >&2
	exit 1
}

# git refuses a checkout owned by another user (a shared tree, CI) unless told it is safe; the
# command line may say so for this one invocation.
git_() { git -c safe.directory="$root_dir" -C "$root_dir" "$@"; }

# describe: sets version and commit from VERSION/COMMIT or git.
describe() {
	commit=${COMMIT:-}
	version=${VERSION:-}
	local head="" short tag n dirty="" when
	if head=$(git_ rev-parse --verify -q HEAD 2>/dev/null); then
		short=$(git_ rev-parse --short=12 HEAD)
		# Untracked files count, as for Go's vcs.modified: a new .go file is in the build.
		[[ -z $(git_ status --porcelain 2>/dev/null) ]] || dirty=1
	fi
	if [[ -z $commit ]]; then
		commit=${head:-unknown}
	fi
	if [[ -z $version ]]; then
		if [[ -z $head && $cmd == dev ]]; then
			# A development build outside git says so rather than inventing a version.
			version=dev
			return 0
		elif [[ -z $head ]]; then
			die "not a git checkout (or git is missing): set VERSION (and COMMIT), e.g. VERSION=1.2.0 make deb"
		fi
		if tag=$(git_ describe --tags --abbrev=0 --match 'v[0-9]*' 2>/dev/null); then
			n=$(git_ rev-list --count "$tag..HEAD")
			version=${tag#v}
			version=${version//-/\~}
			((n == 0)) || version+="+$n.g$short"
		else
			when=$(TZ=UTC git_ log -1 --format=%cd --date=format-local:%Y%m%d%H%M%S HEAD)
			version="0.0.0+$when.g$short"
		fi
		if [[ -n $dirty ]]; then
			if [[ $version == *+* ]]; then version+=".dirty"; else version+="+dirty"; fi
		fi
	fi
	# Debian's rule for an upstream version without a revision: a digit first, then letters,
	# digits and . + ~ only.
	[[ $version =~ ^[0-9][A-Za-z0-9.+~]*$ ]] ||
		die "version \"$version\" is not a Debian version (a digit first, then letters, digits, . + ~)"
	[[ $commit =~ ^[0-9a-f]{7,64}$|^unknown$ ]] || die "commit \"$commit\" is not a commit hash"
}

# build_binary OUT [dev [PKG]]: the release binary (PKG: ./cmd/lifeboat unless given). CGO off: a static binary that runs on any Debian and
# Ubuntu release (the sqlite driver is pure Go); -trimpath: no build machine paths in it; -s -w:
# no symbol table or DWARF (a third of the size), while panics still print named stack traces.
# Those flags make Go compile everything again (once, then cached); "dev" leaves them out.
build_binary() {
	local out=$1 flags=(-trimpath) ldflags="-s -w " cgo=0 pkg=${3:-./cmd/lifeboat}
	if [[ ${2:-} == dev ]]; then
		flags=() ldflags="" cgo=$(go env CGO_ENABLED)
	fi
	mkdir -p "$(dirname "$out")"
	(cd "$root_dir" && CGO_ENABLED=$cgo go build "${flags[@]}" -buildvcs=false \
		-ldflags "$ldflags-X main.version=$version -X main.commit=$commit" \
		-o "$out" "$pkg")
}

cmd=${1:-}
case $cmd in
version)
	describe
	echo "VERSION=$version"
	echo "COMMIT=$commit"
	;;
binary | dev)
	[[ $# -eq 2 ]] || die "usage: release.sh $cmd OUT"
	describe
	build_binary "$2" "$cmd"
	echo "built $2: $("$2" version)"
	;;
deb)
	[[ $# -eq 2 ]] || die "usage: release.sh deb OUTDIR"
	describe
	out=$(mkdir -p "$2" && cd "$2" && pwd)
	stage=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-deb.XXXXXX")
	trap 'rm -rf "$stage"' EXIT
	build_binary "$stage/lifeboat"
	# archive_command's small client (docs/postgres.md, "The hand-off to serve"), beside lifeboat,
	# which it runs whenever no serve takes the segment.
	build_binary "$stage/lifeboat-walpush" release ./cmd/lifeboat-walpush
	# The unit in docs/ is for a binary installed by hand in /usr/local/bin; the package's is in
	# /usr/bin.
	sed 's|^ExecStart=/usr/local/bin/lifeboat |ExecStart=/usr/bin/lifeboat |' \
		"$root_dir/docs/lifeboat.service" >"$stage/lifeboat.service"
	grep -q '^ExecStart=/usr/bin/lifeboat ' "$stage/lifeboat.service" ||
		die "docs/lifeboat.service has no 'ExecStart=/usr/local/bin/lifeboat ...' line to point at /usr/bin/lifeboat"
	# File times in the package: the commit's, so two builds of one commit are the same package.
	if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
		SOURCE_DATE_EPOCH=$(git_ log -1 --format=%ct HEAD 2>/dev/null || date +%s)
	fi
	# nFPM lives in its own module (packaging/mkdeb/go.mod) so that its dependencies stay out of
	# Lifeboat's go.mod; go run caches the built tool.
	# The package is for GOARCH; the tool runs here, so it is built for this machine.
	arch=$(go env GOARCH)
	(cd "$root_dir/packaging/mkdeb" &&
		env -u GOOS -u GOARCH VERSION="$version" ARCH="$arch" STAGE="$stage" \
			MAINTAINER="${MAINTAINER:-Lifeboat maintainers <maintainers@lifeboat-dr.invalid>}" \
			SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" GOFLAGS="-mod=readonly -buildvcs=false" \
			go run . -config "$root_dir/packaging/nfpm.yaml" -out "$out")
	;;
*)
	die "usage: release.sh version | binary OUT | dev OUT | deb OUTDIR"
	;;
esac
