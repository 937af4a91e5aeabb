#!/usr/bin/env bash
# Installs what the test suite needs on Debian: the PostgreSQL 15 server binaries (tests start real
# clusters from /usr/lib/postgresql/15/bin), contrib, git, make, promtool (Debian's prometheus), Chromium (the dashboard's browser tests) and MinIO (scripts/install-minio.sh).
# Idempotent and silent when nothing is missing; apt-get runs only when something is. As a normal
# user it prints the command to run.
# Debian's package may create and start its own "15/main" cluster: the tests never use it.
set -euo pipefail

pg_bin=/usr/lib/postgresql/15/bin
pg_share=/usr/share/postgresql/15

missing=()
need() { # need PACKAGE: record a package to install, once
	local p
	for p in "${missing[@]+"${missing[@]}"}"; do
		[[ $p == "$1" ]] && return 0
	done
	missing+=("$1")
}

for b in initdb pg_ctl postgres pgbench pg_controldata pg_waldump; do
	[[ -x $pg_bin/$b ]] || need postgresql-15
done
[[ -x $pg_bin/psql ]] || need postgresql-client-15
[[ -f $pg_share/extension/amcheck.control ]] || need postgresql-contrib
command -v git >/dev/null 2>&1 || need git
# promtool checks docs/monitoring's alerting rules and dashboard queries.
command -v promtool >/dev/null 2>&1 || need prometheus
command -v make >/dev/null 2>&1 || need make
# Chromium drives the dashboard's browser tests (internal/web, through chromedp).
command -v chromium >/dev/null 2>&1 || need chromium
[[ -x /usr/sbin/useradd ]] || command -v useradd >/dev/null 2>&1 || need passwd
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || need ca-certificates

if ((${#missing[@]} > 0)); then
	install=(apt-get install -y --no-install-recommends "${missing[@]}")
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-test-deps: missing packages: ${missing[*]}" >&2
		echo "install-test-deps: run as root:" >&2
		echo "  apt-get update && DEBIAN_FRONTEND=noninteractive ${install[*]}" >&2
		exit 1
	fi
	echo "install-test-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	"${install[@]}" -qq >/dev/null
	if [[ ! -x $pg_bin/initdb ]]; then
		echo "install-test-deps: $pg_bin/initdb still missing after installing ${missing[*]}" >&2
		exit 1
	fi
fi

# Go is not a Debian package here (the distribution's is too old): it must be installed already.
if ! command -v go >/dev/null 2>&1 && [[ ! -x /usr/local/go/bin/go ]]; then
	echo "install-test-deps: the Go toolchain is missing: 'go' is not in PATH nor at /usr/local/go/bin/go." >&2
	echo "install-test-deps: install the Go version named in go.mod (https://go.dev/dl/) and put it in PATH." >&2
	exit 1
fi

# MinIO, the S3 server the storage tests start: built with Go the first time (minutes), silent after.
bash "$(dirname "${BASH_SOURCE[0]}")/install-minio.sh"
