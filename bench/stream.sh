#!/usr/bin/env bash
# Measures the RPO of WAL streaming (docs/postgres.md, "Streaming WAL"):
# a fresh cluster is backed up, `lifeboat wal-stream` streams its WAL with
# flush_interval 1s (archive_command wal-push as the second path), and
# `pgbench -c 4` runs unthrottled, each transaction also inserting a row
# stamped with clock_timestamp() into a ledger. After SECONDS the
# postmaster and every process of the cluster are killed with SIGKILL at
# once (a crash of the host), the stream is stopped, and the asset is
# restored to latest. The RPO of a round is the time of the last
# transaction pgbench saw acknowledged (its per-transaction log) minus the
# newest ledger stamp restored (a stamp precedes its commit, so this errs
# on the long side). Prints each round and the median.
#
#   bench/stream.sh [-t SECONDS] [-r ROUNDS] [-f FLUSH_INTERVAL] [-k] [-s]
#
# -s makes the stream a synchronous standby (synchronous_standby_names =
# 'lifeboat_bench'): a commit returns only once the repository holds it.
# A round then also counts the transactions pgbench saw acknowledged
# against the ledger rows restored: fewer rows than acknowledgements is an
# acknowledged commit lost. With -s -k -r 20 it is issue 16's "no
# acknowledged commit lost in 20 kill-and-restore rounds".
#
# -k kills the stream with SIGKILL in the same instant as the cluster (a
# Lifeboat on the database host that dies with it): it cannot store what
# it received after its last flush, so the loss is bounded by
# flush_interval rather than by what had reached it.
#
# Run as root: the cluster and Lifeboat run as postgres (bench/pgenv.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=20 rounds=3 flush=1s killboth=0 sync=0
while getopts "t:r:f:ks" o; do
	case $o in
	t) secs=$OPTARG ;;
	r) rounds=$OPTARG ;;
	f) flush=$OPTARG ;;
	k) killboth=1 ;;
	s) sync=1 ;;
	*) exit 2 ;;
	esac
done

root=$(mktemp -d /var/tmp/lifeboat-stream.XXXXXX)
chmod 755 "$root"
bin=$root/bin/lifeboat
# shellcheck source=bench/pgenv.sh
source "$repo_root/bench/pgenv.sh"
need_root
chown "$pguser" "$root" # initdb, repo init and restore write here as postgres
streamer=""
cleanup() {
	[[ -n $streamer ]] && kill "$streamer" 2>/dev/null || true
	pg_stop
	[[ -f $root/restored/postmaster.pid ]] && as_pg "$pgbin/pg_ctl" -D "$root/restored" -m immediate -w stop >/dev/null 2>&1 || true
	rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/bin"
(cd "$repo_root" && build_lifeboat "$root/bin")

# kill_cluster: SIGKILL to the postmaster and all its children at once.
kill_cluster() {
	local pm
	pm=$(head -1 "$pgdata/postmaster.pid")
	local also=""
	if ((killboth)); then also=$streamer; fi
	# shellcheck disable=SC2046 # one kill for all: the same instant
	kill -KILL "$pm" $(ps -o pid= --ppid "$pm") $also 2>/dev/null || true
	while kill -0 "$pm" 2>/dev/null; do sleep 0.05; done
	rm -f "$pgdata/postmaster.pid"
}

results=()
for ((i = 1; i <= rounds; i++)); do
	rm -rf "$root/data" "$root/restored" "$root/repo" "$root/state" "$root/sock" "$root/pghome"
	pg_init
	# archive_command stays on as the second path (backup's preflight
	# wants it); the segment in progress is the stream's alone.
	pg_policy "    wal: {stream: true, flush_interval: $flush}"
	pg_start
	as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -s 10 -q postgres >/dev/null 2>&1
	sql "create table ledger (id bigserial primary key, at timestamptz not null)"
	# setpriv execs lifeboat itself, so $! is its pid (runuser would fork
	# and keep it from SIGTERM).
	setpriv --reuid="$pguser" --regid="$pguser" --init-groups "$bin" -c "$root/lb.yaml" wal-stream bench 2>"$root/stream.log" &
	streamer=$!
	# The backup's WAL comes from the stream too: start it first.
	until [[ $(sql "select count(*) from pg_stat_replication where application_name = 'lifeboat_bench'") == 1 ]]; do sleep 0.1; done
	as_pg "$bin" -c "$root/lb.yaml" backup bench >/dev/null 2>"$root/backup.log" || { cat "$root/backup.log" >&2; exit 1; }
	if ((sync)); then
		sql "alter system set synchronous_standby_names = 'lifeboat_bench'" >/dev/null
		sql "select pg_reload_conf()" >/dev/null
		until [[ $(sql "select sync_state from pg_stat_replication where application_name = 'lifeboat_bench'") == sync ]]; do sleep 0.1; done
	fi
	cat >"$root/ledger.sql" <<'SQL'
\set aid random(1, 100000 * :scale)
\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
INSERT INTO ledger (at) VALUES (clock_timestamp());
END;
SQL
	chmod 644 "$root/ledger.sql"
	rm -rf "$root/pglog" && install -d -o "$pguser" "$root/pglog"
	(cd "$root/pglog" && as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -n -c 4 -j 2 -T $((secs + 30)) \
		-f "$root/ledger.sql" -l --log-prefix=tx postgres >/dev/null 2>&1) &
	bench=$!
	sleep "$secs"
	kill_cluster
	wait "$bench" || true
	sleep 2 # the stream has lost its server; let it notice and store what it holds
	kill "$streamer" 2>/dev/null || true
	wait "$streamer" || true
	streamer=""
	# Last acknowledged: the newest end time in pgbench's transaction logs
	# (time_epoch and time_us, fields 5 and 6; failed ones have no latency).
	acked=$(cat "$root"/pglog/tx.* | awk '$3 != "failed" && $3 != "serialization" { t = $5 + $6 / 1e6; if (t > m) m = t } END { printf "%.6f", m }')
	nacked=$(cat "$root"/pglog/tx.* | awk '$3 != "failed" && $3 != "serialization"' | wc -l)
	as_pg "$bin" -c "$root/lb.yaml" restore bench --to "$root/restored" --archive-off >/dev/null 2>"$root/restore.log"
	as_pg env HOME="$pghome" "$pgbin/pg_ctl" -D "$root/restored" -l "$root/restored.log" -w -t 300 start >/dev/null
	until [[ $(sql "select pg_is_in_recovery()") == f ]]; do sleep 0.2; done
	restored=$(sql "select extract(epoch from max(at)) from ledger")
	rows=$(sql "select count(*) from ledger")
	as_pg "$pgbin/pg_ctl" -D "$root/restored" -m fast -w stop >/dev/null
	rpo=$(awk -v a="$acked" -v r="$restored" 'BEGIN { printf "%.3f", a - r }')
	lost=$((nacked > rows ? nacked - rows : 0))
	echo "round $i: last acknowledged $(date -u -d "@$acked" +%T.%N | cut -c1-12), newest restored $(date -u -d "@$restored" +%T.%N | cut -c1-12), RPO ${rpo}s ($rows ledger rows restored, $nacked acknowledged, $lost acknowledged lost)"
	results+=("$rpo")
	losses=$((${losses:-0} + lost))
done
if ((sync)); then
	echo "synchronous: $losses acknowledged commits lost over $rounds rounds"
fi
printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median RPO over %d rounds: %.3fs (flush_interval %s%s)\n", NR, v[int((NR + 1) / 2)], "'"$flush"'", "'"$( ((killboth)) && echo ', stream killed too')"'" }'
