#!/usr/bin/env bash
# Measures a delta restore against a full one (issue 16: "delta restore after
# 1 % of blocks changed ≤ 0.1× of a full restore"): a pgbench cluster (scale
# -s, default 30) is backed up and restored in full into a directory; then
# about 1 % of pgbench_accounts' pages are changed (one row updated on every
# hundredth page), an incremental backup is taken, and `restore --delta`
# brings a directory the full snapshot was restored into up to it. Each
# timed restore runs with the page cache dropped; the delta's directory is
# restored from the full snapshot again (untimed) before each run. Prints
# each run and the medians.
#
#   bench/delta.sh [-s SCALE] [-r RUNS]
#
# Run as root: the cluster and Lifeboat run as postgres (bench/pgenv.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
scale=30 runs=3
while getopts "s:r:" o; do
	case $o in
	s) scale=$OPTARG ;;
	r) runs=$OPTARG ;;
	*) exit 2 ;;
	esac
done
# shellcheck source=bench/pgenv.sh
source "$repo_root/bench/pgenv.sh"
bench_root delta

pg_init
pg_policy
pg_start
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1
as_pg "$bin" -c "$root/lb.yaml" backup bench --full >/dev/null 2>"$root/backup.log"
pages=$(sql "select pg_relation_size('pgbench_accounts') / 8192")

drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
restore() { as_pg "$bin" -c "$root/lb.yaml" restore bench --to "$1" --archive-off "${@:2}"; }

full=() delta=()
rm -rf "$root/full"
drop
timed "$root/r.out" "$root/r.err" restore "$root/full"
((rc == 0)) || { cat "$root/r.err" >&2; exit 1; }
full+=("$secs")
# About 1 % of the table's pages: one row on every hundredth page.
changed=$(sql "select count(distinct (ctid::text::point)[0]) from pgbench_accounts where (ctid::text::point)[0]::bigint % 100 = 0")
sql "update pgbench_accounts set abalance = abalance + 1 where (aid, (ctid::text::point)[0]::bigint) in
	(select min(aid), (ctid::text::point)[0]::bigint from pgbench_accounts where (ctid::text::point)[0]::bigint % 100 = 0 group by 2)" >/dev/null
as_pg "$bin" -c "$root/lb.yaml" backup bench >/dev/null 2>"$root/backup2.log"
first=$(as_pg "$bin" -c "$root/lb.yaml" snapshots bench --json | python3 -c 'import json,sys; print(min(json.load(sys.stdin), key=lambda s: s["stop_time"])["id"])')
for ((i = 1; i <= runs; i++)); do
	if ((i > 1)); then
		rm -rf "$root/full"
		drop
		timed "$root/r.out" "$root/r.err" restore "$root/full" --snapshot "$first"
		((rc == 0)) || { cat "$root/r.err" >&2; exit 1; }
		full+=("$secs")
	fi
	# The directory a delta restore meets: the first snapshot, restored
	# there (and not copied: a copy is new files the record of that
	# restore no longer describes).
	rm -rf "$root/delta"
	restore "$root/delta" --snapshot "$first" >/dev/null 2>"$root/d.err" || { cat "$root/d.err" >&2; exit 1; }
	drop
	timed "$root/d.out" "$root/d.err" restore "$root/delta" --delta
	((rc == 0)) || { cat "$root/d.err" >&2; exit 1; }
	delta+=("$secs")
	echo "run $i: full restore ${full[-1]} s, delta restore ${delta[-1]} s (one row updated on each of $changed of $pages pages of pgbench_accounts)"
done
f=$(median "${full[@]}") d=$(median "${delta[@]}")
echo "medians: full $f s, delta $d s, ratio $(awk -v a="$d" -v b="$f" 'BEGIN { printf "%.2f", a / b }') (target <= 0.10); scale $scale, load $(cut -d' ' -f1-3 /proc/loadavg)"
