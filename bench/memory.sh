#!/usr/bin/env bash
# Measures Lifeboat's peak memory on a large cluster (issue 16: "backup
# peak RSS <= 256 MiB for a 10x larger cluster than today's reference";
# bench/run.sh's reference is pgbench scale 100, so the default here is
# 1000, about 15 GiB on disk). A real cluster, not a sparse one: pgbench -i
# -s SCALE (about 10 minutes on 2 cores at 1000), then a full backup, a
# short pgbench run and an incremental, and a restore of the incremental,
# each with its peak RSS (GNU time's %M) and wall time. Needs about 2.2x
# the cluster's size free in /var/tmp.
#
#   bench/memory.sh [-s SCALE]
#
# Run as root: the cluster and Lifeboat run as postgres (bench/pgenv.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scale=1000
while getopts "s:" o; do
	case $o in
	s) scale=$OPTARG ;;
	*) exit 2 ;;
	esac
done
# shellcheck source=bench/pgenv.sh
source "$repo_root/bench/pgenv.sh"
[[ -x /usr/bin/time ]] || { echo "memory.sh: GNU time is missing (apt-get install time)" >&2; exit 1; }
bench_root memory

pg_init
pg_policy
echo "max_wal_size = 4GB" >>"$pgdata/postgresql.conf"
pg_start
t0=$EPOCHREALTIME
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1
echo "pgbench -i -s $scale: $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s, cluster $(du -sh "$pgdata" | cut -f1)"

# measure NAME CMD...: runs CMD as postgres under GNU time; prints its
# wall time and peak RSS.
measure() {
	local name=$1
	shift
	sync
	echo 3 >/proc/sys/vm/drop_caches
	if ! as_pg /usr/bin/time -f "%e %M" -o "$root/time.out" "$@" >"$root/out.log" 2>"$root/err.log"; then
		cat "$root/err.log" >&2
		exit 1
	fi
	read -r wall rss <"$root/time.out"
	echo "$name: wall $wall s, peak RSS $((rss / 1024)) MiB"
}

measure "full backup" "$bin" -c "$root/lb.yaml" backup bench --full
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -c 4 -T 60 -R 300 postgres >/dev/null 2>&1
measure "incremental backup" "$bin" -c "$root/lb.yaml" backup bench
measure "restore" "$bin" -c "$root/lb.yaml" restore bench --to "$root/restored" --archive-off
echo "repository $(du -sh "$root/repo" | cut -f1); load $(cut -d' ' -f1-3 /proc/loadavg)"
