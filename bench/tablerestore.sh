#!/usr/bin/env bash
# Times a table-level restore (docs/postgres.md, "Some tables, or one
# database") against doing the same by hand: one table of about 100 MB in a
# cluster that also holds other data is brought back as it was at a time T,
# after it was dropped.
#
#   lifeboat    lifeboat restore db --time T --table public.bench_orders --out FILE
#   by hand     lifeboat restore db --time T --to DIR --archive-off; pg_ctl start;
#               wait for the end of recovery; pg_dump -Fc -t public.bench_orders
#
# Target: lifeboat <= 1.2 x by hand (issue 17). Medians of -runs (3) runs of
# each, alternated, with a warm page cache (other work shares the machine;
# dropping the cache would disturb it). The by-hand time leaves out stopping
# the server and removing its directory; lifeboat's includes them.
#
#   bench/tablerestore.sh                     # 100 MB table, pgbench scale 20 beside it
#   bench/tablerestore.sh -rows 300000 -scale 5 -runs 1   # a quick try
#
# Run as root: the cluster and Lifeboat run as postgres (bench/pgenv.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=bench/pgenv.sh
source bench/pgenv.sh
need_root

runs=3 rows=1000000 scale=20 keep=no
while (($# > 0)); do
	case $1 in
	-runs) runs=$2 && shift ;;
	-rows) rows=$2 && shift ;;
	-scale) scale=$2 && shift ;;
	-keep) keep=yes ;;
	*)
		echo "tablerestore.sh: unknown flag $1 (see the comment at the top)" >&2
		exit 2
		;;
	esac
	shift
done

root=$(mktemp -d /var/tmp/lifeboat-tablerestore.XXXXXX)
chmod 755 "$root"
chown "$pguser" "$root"
cleanup() {
	pg_stop
	[[ -f $root/bare/postmaster.pid ]] && as_pg "$pgbin/pg_ctl" -D "$root/bare" -m immediate -w stop >/dev/null 2>&1 || true
	[[ $keep == yes ]] || rm -rf "$root"
}
trap cleanup EXIT
install -d -o "$pguser" -m 755 "$root/bin" "$root/out" "$root/work" "$root/baresock"
bin=$root/bin/lifeboat
build_lifeboat "$root/bin"

pg_init
policy=$root/lifeboat.yaml
cat >"$policy" <<YAML
state_dir: $root/state
repositories:
  - name: primary
    url: file://$root/repo
    key_file: $root/repo.key
assets:
  - name: db
    kind: postgres
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary]
YAML
chown "$pguser" "$policy"
lb() { as_pg env HOME="$pghome" "$bin" -c "$policy" "$@"; }
lb repo init >/dev/null
echo "archive_command = '$bin -c $policy wal-push db %p'" >>"$pgdata/postgresql.conf"
pg_start

echo "== data: pgbench scale $scale, bench_orders $rows rows"
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -s "$scale" -q postgres >/dev/null 2>&1
sql "create table bench_t (id serial, at timestamptz default now())" \
	"create table bench_orders (id bigint primary key, customer int not null, amount numeric(12,2), note text)" \
	"insert into bench_orders select g, g % 5000, (g % 100000) / 100.0, md5(g::text) || md5((g * 7)::text) from generate_series(1, $rows) g" \
	"checkpoint" >/dev/null
size=$(sql "select pg_size_pretty(pg_total_relation_size('bench_orders')) || ' in a cluster of ' || (select pg_size_pretty(sum(pg_database_size(datname))) from pg_database)")
echo "   bench_orders: $size"
lb backup db >/dev/null
sql "update bench_orders set amount = amount + 1 where id % 10 = 0" >/dev/null
sleep 1.1
at=$(sql "select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || 'Z'")
want=$(sql "select count(*) || '/' || sum(amount) from bench_orders")
sleep 1.1
sql "drop table bench_orders" >/dev/null
switch_wait

# by_hand N: the restore, recovery and pg_dump an operator would run.
by_hand() {
	local n=$1 i t0=$EPOCHREALTIME t1 t2
	rm -rf "$root/bare"
	lb restore db --time "$at" --to "$root/bare" --archive-off >/dev/null
	t1=$EPOCHREALTIME
	as_pg env HOME="$pghome" "$pgbin/pg_ctl" -D "$root/bare" -l "$root/bare.log" -w -t 600 \
		-o "-c port=5433 -c listen_addresses='' -c unix_socket_directories=$root/baresock -c archive_mode=off" start >/dev/null
	for ((i = 0; i < 60000; i++)); do
		[[ $(as_pg "$pgbin/psql" -h "$root/baresock" -p 5433 -U postgres -d postgres -XAtqc "select pg_is_in_recovery()" 2>/dev/null) == f ]] && break
		sleep 0.01
	done
	t2=$EPOCHREALTIME
	as_pg "$pgbin/pg_dump" -h "$root/baresock" -p 5433 -U postgres -d postgres -Fc -t public.bench_orders -f "$root/out/hand-$n.dump"
	awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$EPOCHREALTIME" \
		'BEGIN { printf "restore %.1f s, recovery %.1f s, pg_dump %.1f s\n", b - a, c - b, d - c }' >"$root/hand-$n.phases"
}
stop_hand() {
	as_pg "$pgbin/pg_ctl" -D "$root/bare" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$root/bare"
}
with_lifeboat() {
	lb -v restore db --time "$at" --table public.bench_orders --out "$root/out/lifeboat-$1.dump" --work-dir "$root/work" >/dev/null 2>"$root/lb-$1.log"
}

hand=() tool=()
run_hand() {
	timed "$root/hand.out" "$root/hand.err" by_hand "$1"
	[[ $rc -eq 0 ]] || { cat "$root/hand.err" >&2; exit 1; }
	hand+=("$secs")
	stop_hand
}
run_tool() {
	timed "$root/lb.out" "$root/lb.err" with_lifeboat "$1"
	[[ $rc -eq 0 ]] || { cat "$root/lb.err" >&2; exit 1; }
	tool+=("$secs")
}
# Alternated, so that neither always runs first on a busy machine.
for ((r = 1; r <= runs; r++)); do
	if ((r % 2)); then
		run_hand "$r" && run_tool "$r"
	else
		run_tool "$r" && run_hand "$r"
	fi
	echo "   run $r: by hand ${hand[-1]} s ($(cat "$root/hand-$r.phases")), lifeboat ${tool[-1]} s"
	grep -o 'table restore: [a-z ]*\|seconds=[0-9.]*' "$root/lb-$r.log" | paste -sd' ' | sed 's/^/      /' || true
done

# The two dumps hold the same rows.
check() {
	local f=$1 db=check_$2
	sql "create database $db" >/dev/null
	as_pg "$pgbin/pg_restore" -h "$pgsock" -p "$pgport" -U postgres -d "$db" "$f"
	as_pg "$pgbin/psql" -h "$pgsock" -p "$pgport" -U postgres -d "$db" -XAtqc "select count(*) || '/' || sum(amount) from bench_orders"
}
got_hand=$(check "$root/out/hand-1.dump" hand)
got_tool=$(check "$root/out/lifeboat-1.dump" tool)
if [[ $got_hand != "$want" || $got_tool != "$want" ]]; then
	echo "rows differ: want $want, by hand $got_hand, lifeboat $got_tool" >&2
	exit 1
fi

mh=$(median "${hand[@]}") mt=$(median "${tool[@]}")
echo "== bench_orders $size at $at, $runs runs"
echo "   by hand (restore + recovery + pg_dump -t): median $mh s  (${hand[*]})"
echo "   lifeboat restore --table:                  median $mt s  (${tool[*]})"
awk -v a="$mt" -v b="$mh" 'BEGIN { printf "   ratio %.2f (target <= 1.20)\n", a / b }'
echo "   load: $(uptime)"
