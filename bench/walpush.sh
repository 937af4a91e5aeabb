#!/usr/bin/env bash
# Measures archive_command latency under load: `lifeboat wal-push` with a
# key-file and with a passphrase repository, each alone and handing segments
# to a running `lifeboat serve` (the "-serve" configurations: the daemon runs
# for that turn only; "walpush-" is the small client cmd/lifeboat-walpush),
# side by side with pgBackRest's archive-push (when
# installed) in the same run, under `pgbench -c 4` at a fixed rate. Each configuration takes its turn as archive_command for
# SECONDS of pgbench, then the archiver drains; a wrapper logs the wall time
# of every call. Prints, per configuration, the median and p99 of each
# round and the median of the rounds' medians and p99s.
#
#   bench/walpush.sh [-t SECONDS] [-r ROUNDS] [-R TPS] [-b BASELINE_LIFEBOAT] [-c REGEX]
#
# At 300 tps pgbench fills a 16 MiB segment only every 10-30 s, so the
# default of 180 s per turn gives 6-18 pushes per configuration and round.
#
# -b adds a run of another lifeboat binary (say, one built before a change)
# with the same repositories. -c keeps only the configurations whose name
# matches REGEX (grep -E), say 'serve|pgbackrest'. Run as root: the
# cluster and Lifeboat run as postgres (bench/pgenv.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=180 rounds=3 tps=300 baseline="" only=""
while getopts "t:r:R:b:c:" o; do
	case $o in
	t) secs=$OPTARG ;;
	r) rounds=$OPTARG ;;
	R) tps=$OPTARG ;;
	b) baseline=$OPTARG ;;
	c) only=$OPTARG ;;
	*) exit 2 ;;
	esac
done

root=$(mktemp -d /var/tmp/lifeboat-walpush.XXXXXX)
chmod 755 "$root"
bin=$root/bin/lifeboat
# shellcheck source=bench/pgenv.sh
source "$repo_root/bench/pgenv.sh"
need_root
chown "$pguser" "$root" # initdb and repo init write here as postgres
trap 'pg_stop; rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/logs"
(cd "$repo_root" && build_lifeboat "$root/bin" && go build -o "$root/bin/lifeboat-walpush" ./cmd/lifeboat-walpush)
if [[ -n $baseline ]]; then
	install -m 755 "$baseline" "$root/bin/baseline"
fi
chown -R "$pguser" "$root/logs"

pg_init
cat >>"$pgdata/postgresql.conf" <<CONF
archive_command = '/bin/false'
checkpoint_timeout = 60s
CONF
pg_start
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -s 10 -q postgres >/dev/null 2>&1

configs=()
for kind in keyfile passphrase; do
	if [[ $kind == keyfile ]]; then secret="key_file: $root/lb-$kind.key"; else secret='passphrase: "bench passphrase, long enough"'; fi
	install -d -o "$pguser" -m 700 "$root/state-$kind"
	cat >"$root/lb-$kind.yaml" <<YAML
state_dir: $root/state-$kind
repositories:
  - name: primary
    url: file://$root/repo-$kind
    $secret
assets:
  - name: bench
    kind: postgres
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary]
YAML
	chown "$pguser" "$root/lb-$kind.yaml"
	as_pg "$bin" -c "$root/lb-$kind.yaml" repo init >/dev/null
	configs+=("lifeboat-$kind|$bin -c $root/lb-$kind.yaml wal-push bench")
	# -v: each push through the daemon logs by=serve into the server's log.
	configs+=("lifeboat-$kind-serve|$bin -c $root/lb-$kind.yaml -v wal-push bench")
	# the small hand-off client (cmd/lifeboat-walpush), same arguments
	configs+=("walpush-$kind-serve|$root/bin/lifeboat-walpush -c $root/lb-$kind.yaml -v wal-push bench")
	if [[ -n $baseline ]]; then
		configs+=("baseline-$kind|$root/bin/baseline -c $root/lb-$kind.yaml wal-push bench")
	fi
done
if command -v pgbackrest >/dev/null; then
	install -d -o "$pguser" -m 700 "$root/pgbr-repo" "$root/pgbr-log" "$root/pgbr-lock" "$root/pgbr-spool"
	cat >"$root/pgbackrest.conf" <<CONF
[global]
repo1-path=$root/pgbr-repo
compress-type=zst
compress-level=3
archive-async=n
log-level-console=warn
log-path=$root/pgbr-log
lock-path=$root/pgbr-lock
spool-path=$root/pgbr-spool

[bench]
pg1-path=$pgdata
pg1-socket-path=$pgsock
pg1-port=$pgport
CONF
	chown "$pguser" "$root/pgbackrest.conf"
	as_pg pgbackrest --config="$root/pgbackrest.conf" --stanza=bench stanza-create >/dev/null
	configs+=("pgbackrest|pgbackrest --config=$root/pgbackrest.conf --stanza=bench archive-push")
fi

if [[ -n $only ]]; then
	kept=()
	for c in "${configs[@]}"; do
		if grep -qE -- "$only" <<<"${c%%|*}"; then kept+=("$c"); fi
	done
	((${#kept[@]} > 0)) || { echo "walpush.sh: no configuration matches -c $only" >&2; exit 2; }
	configs=("${kept[@]}")
fi

# wrapper NAME COMMAND: an archive_command that logs "start end exit" in ns.
wrapper() {
	local w=$root/walpush-$1.sh
	cat >"$w" <<SH
#!/bin/bash
s=\$(date +%s%N)
$2 "\$1"
rc=\$?
echo "\$s \$(date +%s%N) \$rc" >>$root/logs/$1.log
exit \$rc
SH
	chmod 755 "$w"
	echo "$w"
}

# drain: ends the current segment and waits until nothing is left to archive.
drain() {
	sql "select pg_switch_wal()" >/dev/null
	while compgen -G "$pgdata/pg_wal/archive_status/*.ready" >/dev/null; do sleep 0.2; done
}

# stats LOG FROM: median and p99 (nearest rank, ms) of the successful calls
# that started at or after FROM (ns), their count, and the failures.
stats() {
	awk -v from="$2" '$1 >= from { if ($3 == 0) print ($2 - $1) / 1e6; else bad++ } END { if (bad) print "fail", bad > "/dev/stderr" }' "$1" |
		sort -n | awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "n=0"; exit }
			m = v[int((NR + 1) / 2)]; i = int(NR * 0.99 + 0.999); if (i < 1) i = 1
			printf "%.1f %.1f %d\n", m, v[i], NR }'
}

# serve_start KIND / serve_stop: the daemon of a "-serve" turn. wal-push
# finds its socket in the state directory; without it, wal-push works alone.
serve_pid=""
serve_start() {
	# exec: $! is runuser, which passes SIGTERM on to serve.
	(exec runuser -u "$pguser" -- "$bin" -c "$root/lb-$1.yaml" serve >>"$root/logs/serve-$1.log" 2>&1) &
	serve_pid=$!
	local i
	for i in $(seq 1 300); do
		[[ -S $root/state-$1/wal-push.sock ]] && return
		sleep 0.1
	done
	echo "serve did not open its socket; see $root/logs/serve-$1.log" >&2
	exit 1
}
serve_stop() {
	if [[ -n $serve_pid ]]; then
		kill -TERM "$serve_pid"
		wait "$serve_pid" || true
		serve_pid=""
	fi
}
trap 'serve_stop; pg_stop; rm -rf "$root"' EXIT

declare -A meds p99s
for round in $(seq 1 "$rounds"); do
	for c in "${configs[@]}"; do
		name=${c%%|*} cmd=${c#*|}
		w=$(wrapper "$name" "$cmd")
		case $name in
		*-serve)
			kind=${name#*-}
			serve_start "${kind%-serve}"
			;;
		esac
		sql "alter system set archive_command = '$w %p'" "select pg_reload_conf()" >/dev/null
		drain # warms the new command up (the daemon opens the repository) outside the timed span
		handed=$(grep -c "by=serve" "$root/pg.log" || true)
		from=$(date +%s%N)
		as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -c 4 -j 2 -R "$tps" -T "$secs" -n postgres >"$root/logs/pgbench-$name-$round.log" 2>&1
		drain
		serve_stop
		read -r med p99 n < <(stats "$root/logs/$name.log" "$from")
		handed=$(($(grep -c "by=serve" "$root/pg.log" || true) - handed))
		echo "round $round $name: median $med ms, p99 $p99 ms over $n pushes ($handed handed to serve)"
		meds[$name]+="$med " p99s[$name]+="$p99 "
	done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
echo "medians of $rounds rounds (pgbench -c 4 -R $tps -T $secs, scale 10; load average $(cut -d' ' -f1-3 /proc/loadavg)):"
for c in "${configs[@]}"; do
	name=${c%%|*}
	echo "  $name: median $(echo "${meds[$name]}" | median) ms, p99 $(echo "${p99s[$name]}" | median) ms"
done
