#!/usr/bin/env bash
# Runs the logical-dump benchmark (kind pg_dump) against pg_dump and
# pg_restore on a reference transactions database (see docs/pgdump.md).
#
#   bench/dump.sh [lbdump flags...]      e.g. bench/dump.sh -rows 3000000 -modes recent,uniform
#
# Needs the PostgreSQL 15 server and client programs (apt-get install
# postgresql-15); as root it runs the cluster and the tools as the user
# lifeboat-bench (-user) and drops the page cache before each measured step.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

if [[ ! -x /usr/lib/postgresql/15/bin/initdb ]]; then
	echo "dump.sh: PostgreSQL 15 is missing (apt-get install postgresql-15)" >&2
	exit 1
fi
if [[ $(id -u) -eq 0 ]] && ! id lifeboat-bench >/dev/null 2>&1; then
	useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin lifeboat-bench
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
go build -o "$tmp/lifeboat" ./cmd/lifeboat
go build -o "$tmp/lbdump" ./bench/cmd/lbdump
"$tmp/lbdump" -lifeboat "$tmp/lifeboat" "$@"
