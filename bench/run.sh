#!/usr/bin/env bash
# Runs the Lifeboat vs pgBackRest benchmark (see docs/benchmarks.md).
#
#   bench/run.sh [lbbench flags...]      e.g. bench/run.sh -runs 3
#   bench/run.sh -scale 5 -tx-rows 100000 -root /var/tmp/lifeboat-bench-small
#   bench/run.sh -storage s3             # both tools against MinIO on 127.0.0.1 (TLS)
#
# Installs pgbackrest and PostgreSQL 15 with apt-get when they are missing
# (needs root), builds lifeboat from this tree and runs the harness. A
# lifeboat that does not build is reported by the harness as a failed phase;
# the pgBackRest side still runs.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

pg_bin=/usr/lib/postgresql/15/bin
missing=()
command -v pgbackrest >/dev/null 2>&1 || missing+=(pgbackrest)
for tool in initdb pg_ctl postgres pgbench; do
	if [[ ! -x "$pg_bin/$tool" ]]; then
		missing+=(postgresql-15)
		break
	fi
done
[[ -x "$pg_bin/psql" ]] || missing+=(postgresql-client-15)
if ((${#missing[@]} > 0)); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "run.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
		exit 1
	fi
	echo "run.sh: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# -storage s3 runs both tools against a MinIO server the harness starts;
# scripts/install-minio.sh builds it once (as root, ~6 min) and is silent when
# it is installed. A -minio flag names another binary and skips this.
storage=fs
own_minio=no
prev=
for arg in "$@"; do
	case $prev in
	-storage | --storage) storage=$arg ;;
	esac
	case $arg in
	-storage=* | --storage=*) storage=${arg#*=} ;;
	-minio | --minio | -minio=* | --minio=*) own_minio=yes ;;
	esac
	prev=$arg
done
if [[ $storage == s3 && $own_minio == no ]]; then
	bash scripts/install-minio.sh
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

lifeboat_flag=()
if go build -o "$tmp/lifeboat" ./cmd/lifeboat; then
	lifeboat_flag=(-lifeboat "$tmp/lifeboat")
else
	echo "run.sh: warning: ./cmd/lifeboat does not build; the lifeboat phase will be reported as failed" >&2
	lifeboat_flag=(-lifeboat "$tmp/lifeboat-missing")
fi
go build -o "$tmp/lbbench" ./bench/cmd/lbbench

exec_status=0
"$tmp/lbbench" "${lifeboat_flag[@]}" "$@" || exec_status=$?
exit "$exec_status"
