#!/usr/bin/env bash
# Installs the MinIO server the S3 tests start (internal/s3test). MinIO is not a Debian package and CI
# reaches only the Go module proxy, so it is built from source with `go install` at a pinned version
# into /usr/local/lib/lifeboat/minio-<version>/minio, with a symlink /usr/local/lib/lifeboat/minio.
# Idempotent and silent when the pinned binary is present. The first build takes ~6 minutes and ~150 MB.
# Root owns the install so that both root and the unprivileged test user (lifeboat-test) can run it.
set -euo pipefail

version=v0.0.0-20260212201848-7aac2a2c5b7c
module=github.com/minio/minio
prefix=/usr/local/lib/lifeboat
dir=$prefix/minio-$version
bin=$dir/minio
link=$prefix/minio

# A fresh CI shell may have Go installed without it being in PATH.
PATH=$PATH:/usr/local/go/bin

if [[ ! -x $bin ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-minio: MinIO $version is missing at $bin" >&2
		self=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
		echo "install-minio: run as root (it builds MinIO with Go, ~6 min the first time):" >&2
		echo "  sudo env PATH=\"\$PATH\" bash $self" >&2
		exit 1
	fi
	if ! command -v go >/dev/null 2>&1; then
		echo "install-minio: the Go toolchain is needed to build MinIO: 'go' is not in PATH nor at /usr/local/go/bin/go." >&2
		exit 1
	fi

	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	# Without HOME (some CI shells) go has no default cache; a throwaway one still works.
	if [[ -z $(go env GOCACHE 2>/dev/null) ]]; then
		export GOCACHE=$tmp/gocache
	fi
	if [[ -z $(go env GOMODCACHE 2>/dev/null) ]]; then
		export GOMODCACHE=$tmp/gomodcache
	fi

	echo "building MinIO $version (first time, ~6 min)" >&2
	# cd away from any module so the project's go.mod and go.work play no part in the build. Its
	# hundreds of "go: downloading" lines are shown only when the build fails.
	if ! (cd "$tmp" && GOBIN=$tmp/bin GOFLAGS=-buildvcs=false GO111MODULE=on \
		go install "$module@$version") >"$tmp/build.log" 2>&1; then
		tail -n 50 "$tmp/build.log" >&2
		echo "install-minio: go install $module@$version failed (output above)" >&2
		exit 1
	fi

	# Install under a temporary name and rename, so a concurrent reader never sees half a binary.
	install -d -m 0755 "$prefix" "$dir"
	install -m 0755 "$tmp/bin/minio" "$bin.tmp.$$"
	mv -f "$bin.tmp.$$" "$bin"
fi

if [[ $(readlink "$link" 2>/dev/null || true) != "$bin" ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-minio: $link does not point at $bin; run as root:" >&2
		echo "  ln -sfn $bin $link" >&2
		exit 1
	fi
	ln -sfn "$bin" "$link.tmp.$$"
	mv -fT "$link.tmp.$$" "$link"
fi

if ! out=$("$bin" --version 2>&1); then
	echo "install-minio: $bin --version failed:" >&2
	echo "$out" >&2
	exit 1
fi
