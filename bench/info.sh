#!/usr/bin/env bash
# Times `lifeboat info ASSET` (and `info --json`) on an asset with 100
# snapshots and 30 days of WAL, on a file:// repository and on MinIO (see
# docs/benchmarks.md, "First-day traps and lifeboat info"). Targets: under 1 s on the
# file repository, under 3 s on MinIO; median of 3 runs with the page cache
# dropped before each.
#
#   bench/info.sh                        # build the repositories once (minutes), then measure
#   bench/info.sh -runs 5 -profile       # more runs; also write a CPU profile of one run of each
#   bench/info.sh -rebuild               # build again from scratch
#   bench/info.sh -snapshots 10 -days 3  # a smaller asset (a quick try)
#   bench/info.sh -no-s3                 # the file repository only
#
# "30 days of WAL" is one segment every -interval minutes (default 5, the
# archive_timeout of a quiet server), so 8,640 segments, each holding one
# commit. They and the 100 backups are made in 10 rounds (-rounds) of 864
# segments followed by 10 backups, and a restore point is recorded every
# tenth backup. The cluster has 1 MiB WAL segments
# (-wal-segsize; initdb's default is 16) and fsync off, every segment is
# ended by pg_switch_wal, and between backups the server archives with
# basic_archive into a staging directory that bench/cmd/lbwalpush stores
# with wal-push's own code: the build takes minutes, not a month or an
# hour of process starts. The repository holds the objects a month would
# leave (one per segment, one manifest per snapshot), but their times span
# the build. Everything lives in -root (default /var/tmp/lifeboat-info-bench)
# and is reused while the parameters match.
#
# Run as root (it drops the page cache; the cluster, MinIO and Lifeboat run
# as postgres). MinIO: /usr/local/lib/lifeboat/minio (scripts/install-minio.sh).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=bench/pgenv.sh
source bench/pgenv.sh
need_root

root=/var/tmp/lifeboat-info-bench
rebuild=no runs=3 snapshots=100 days=30 interval=5 segsize=1 rounds=10 s3=yes profile=no
minio=${LIFEBOAT_MINIO_BIN:-/usr/local/lib/lifeboat/minio}
while (($# > 0)); do
	case $1 in
	-root) root=$2 && shift ;;
	-rebuild) rebuild=yes ;;
	-runs) runs=$2 && shift ;;
	-snapshots) snapshots=$2 && shift ;;
	-days) days=$2 && shift ;;
	-interval) interval=$2 && shift ;;
	-wal-segsize) segsize=$2 && shift ;;
	-rounds) rounds=$2 && shift ;;
	-no-s3) s3=no ;;
	-minio) minio=$2 && shift ;;
	-profile) profile=yes ;;
	*)
		echo "info.sh: unknown flag $1 (see the comment at the top)" >&2
		exit 2
		;;
	esac
	shift
done
segments=$((days * 24 * 60 / interval))
params="snapshots=$snapshots days=$days interval=${interval}m segments=$segments wal_segsize=${segsize}MiB rounds=$rounds s3=$s3"
if [[ $s3 == yes && ! -x $minio ]]; then
	bash scripts/install-minio.sh
fi

if [[ $rebuild == yes || ! -f $root/built || $(head -1 "$root/built" 2>/dev/null) != "$params" ]]; then
	[[ -f $root/minio.pid ]] && kill "$(cat "$root/minio.pid")" 2>/dev/null || true
	[[ -f $root/data/postmaster.pid ]] && runuser -u "$pguser" -- "$pgbin/pg_ctl" -D "$root/data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$root"
fi
install -d -o "$pguser" -m 755 "$root" "$root/bin" "$root/logs"
bin=$root/bin/lifeboat
build_lifeboat "$root/bin"
go build -o "$root/bin/lbwalpush" ./bench/cmd/lbwalpush

pgdata=$root/data pgsock=$root/sock pgport=5432 pghome=$root/pghome
repo=$root/repo
lb() { # lb POLICY ARGS...
	local p=$1
	shift
	as_pg "$bin" -c "$root/$p.yaml" "$@"
}

# MinIO on 127.0.0.1, plain HTTP, its data in $root/minio.
start_minio() {
	install -d -o "$pguser" -m 700 "$root/minio" "$root/minio-certs"
	if [[ ! -f $root/minio.env ]]; then
		printf 'ak=lb%s\nsk=%s\n' "$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" "$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$root/minio.env"
		chmod 600 "$root/minio.env"
	fi
	# shellcheck source=/dev/null
	source "$root/minio.env"
	s3port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	cport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	# setpriv and env exec: $! is MinIO itself, which stop_minio stops.
	setpriv --reuid="$pguser" --regid="$(id -g "$pguser")" --init-groups \
		env HOME="$root/minio" MINIO_ROOT_USER="$ak" MINIO_ROOT_PASSWORD="$sk" MINIO_BROWSER=off MINIO_UPDATE=off MINIO_CI_CD=on \
		"$minio" server --address "127.0.0.1:$s3port" --console-address "127.0.0.1:$cport" --certs-dir "$root/minio-certs" "$root/minio" \
		>>"$root/logs/minio.log" 2>&1 &
	echo $! >"$root/minio.pid"
	local i
	for ((i = 0; i < 300; i++)); do
		curl -sf "http://127.0.0.1:$s3port/minio/health/ready" >/dev/null 2>&1 && break
		sleep 0.1
	done
	curl -sf "http://127.0.0.1:$s3port/minio/health/ready" >/dev/null || {
		echo "MinIO did not start (see $root/logs/minio.log)" >&2
		exit 1
	}
	s3url="s3://lbinfo/db?endpoint=http://127.0.0.1:$s3port&region=us-east-1&path_style=true"
}
stop_minio() {
	if [[ -f $root/minio.pid ]]; then
		kill "$(cat "$root/minio.pid")" 2>/dev/null || true
		rm -f "$root/minio.pid"
	fi
}

# The policies: build (the asset in the file repository and, with MinIO,
# there as a copy), info-file and info-s3 (the asset in one repository
# each). MinIO's port changes from run to run.
write_policies() {
	local repos="repositories:
  - name: primary
    url: file://$repo
    key_file: $root/primary.key"
	if [[ $s3 == yes ]]; then
		repos+="
  - name: minio
    url: \"$s3url\"
    key_file: $root/minio.key
    access_key: $ak
    secret_key: $sk"
	fi
	local p list
	local build=primary
	[[ $s3 == yes ]] && build=primary,minio
	for p in build:$build info-file:primary info-s3:minio; do
		list=${p#*:}
		[[ $s3 == no && $list == *minio* ]] && continue
		cat >"$root/${p%%:*}.yaml" <<YAML
state_dir: $root/state
$repos
assets:
  - name: db
    kind: postgres
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [${list//,/, }]
YAML
		chown "$pguser" "$root/${p%%:*}.yaml"
		chmod 600 "$root/${p%%:*}.yaml"
	done
}

cleanup() {
	stop_minio
	pg_stop
}
trap cleanup EXIT

if [[ ! -f $root/built ]]; then
	echo "building: $params (in $root)" >&2
	rm -rf "$root/minio" "$root/minio.env"
	build_start=$EPOCHREALTIME
	[[ $s3 == yes ]] && start_minio
	pg_init --wal-segsize="$segsize"
	cat >>"$pgdata/postgresql.conf" <<CONF
fsync = off
synchronous_commit = off
archive_command = '$bin -c $root/build.yaml wal-push db %p'
basic_archive.archive_directory = '$root/staging'
CONF
	install -d -o "$pguser" -m 700 "$repo" "$root/state"
	write_policies
	pg_start
	if [[ $s3 == yes ]]; then
		curl -sf -X PUT --user "$ak:$sk" --aws-sigv4 "aws:amz:us-east-1:s3" "http://127.0.0.1:$s3port/lbinfo" >/dev/null
	fi
	lb build repo init >/dev/null
	sql "create table bench_t (id bigserial primary key, at timestamptz not null default now(), pad text not null default repeat('x', 200))" \
		"create procedure bench_wal(n int) language plpgsql as \$\$
begin
  for i in 1..n loop
    insert into bench_t default values;
    commit;
    perform pg_switch_wal();
  end loop;
end \$\$" >/dev/null
	# The backups and the segments between them: segment k of $segments
	# precedes backup floor(k * snapshots / segments). Between backups the
	# server archives with basic_archive into $root/staging (no process per
	# segment) and lbwalpush stores the staged segments with PushWAL, the
	# code of wal-push; for each backup archive_command (lifeboat wal-push)
	# is back, so the backup's pre-flight and its WAL wait are the real ones.
	install -d -o "$pguser" -m 700 "$root/staging"
	# The archiver restarts when archive_library changes, and the
	# postmaster starts the new one only when something wakes it (30 s or
	# more otherwise): a reload does.
	archive_library() {
		local lib=$1 i old pid
		old=$(sql "select pid from pg_stat_activity where backend_type = 'archiver'")
		sql "alter system set archive_library = '$lib'" "select pg_reload_conf()" >/dev/null
		for ((i = 0; i < 400; i++)); do
			pid=$(sql "select pid from pg_stat_activity where backend_type = 'archiver'")
			[[ -n $pid && $pid != "$old" && $(sql "show archive_library") == "$lib" ]] && return 0
			sql "select pg_reload_conf()" >/dev/null
			sleep 0.05
		done
		echo "the archiver did not restart with archive_library '$lib'" >&2
		return 1
	}
	wait_archived() {
		local j
		for ((j = 0; j < 1200; j++)); do
			[[ $(sql "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'") == 0 ]] && return 0
			sleep 0.1
		done
		echo "the archiver did not catch up (see $root/pg.log)" >&2
		return 1
	}
	# In -rounds rounds (default 10): the round's share of the segments,
	# then its share of the backups, one after another.
	done_segs=0 done_snaps=0
	t0=$EPOCHREALTIME
	for ((c = 1; c <= rounds; c++)); do
		upto=$((c * segments / rounds))
		n=$((upto - done_segs))
		if ((n > 0)); then
			archive_library basic_archive
			sql "call bench_wal($n)" >/dev/null
			wait_archived
			as_pg "$root/bin/lbwalpush" -c "$root/build.yaml" -asset db -workers 4 "$root/staging" >>"$root/logs/lbwalpush.log"
			archive_library ""
		fi
		done_segs=$upto
		for ((i = done_snaps + 1; i <= c * snapshots / rounds; i++)); do
			sql "insert into bench_t default values" >/dev/null
			lb build backup --no-copy db >>"$root/logs/backups.log" 2>&1 || {
				echo "backup $i failed: $(tail -1 "$root/logs/backups.log")" >&2
				exit 1
			}
			((i % 10 == 0)) && lb build restore-point db "after-backup-$i" >/dev/null
			done_snaps=$i
		done
		printf '  round %d/%d: %d/%d segments, %d/%d backups, %.0f s\n' "$c" "$rounds" "$done_segs" "$segments" "$done_snaps" "$snapshots" \
			"$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')" >&2
	done
	# The last commit, archived: the window's end.
	sql "insert into bench_t default values" "select pg_switch_wal()" >/dev/null
	for ((j = 0; j < 600; j++)); do
		[[ $(sql "select count(*) from pg_ls_archive_statusdir() where name like '%.ready'") == 0 ]] && break
		sleep 0.1
	done
	build_wal_secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
	pg_stop
	copy_secs=0
	if [[ $s3 == yes ]]; then
		t1=$EPOCHREALTIME
		lb build copy db >"$root/logs/copy.log" 2>&1
		copy_secs=$(awk -v a="$t1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
		echo "  copied to MinIO in $copy_secs s: $(head -1 "$root/logs/copy.log")" >&2
	fi
	{
		echo "$params"
		echo "built $(date -u +%FT%TZ): segments and backups ${build_wal_secs} s, copy to MinIO ${copy_secs} s, total $(awk -v a="$build_start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s"
	} >"$root/built"
else
	[[ $s3 == yes ]] && start_minio
	write_policies
fi

# --- measure -----------------------------------------------------------------
wal_objects=$(find "$repo/wal" -type f | wc -l)
repo_bytes=$(du -sb "$repo" | cut -f1)
echo
echo "$(head -1 "$root/built"); $(tail -1 "$root/built")"
echo "file repository: $wal_objects objects under wal/, $(find "$repo" -type f | wc -l) files, $((repo_bytes / 1048576)) MiB"
echo "lifeboat at $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start"
timed /dev/null /dev/null as_pg true
echo "(each time includes runuser -u $pguser, alone $secs s)"

drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }
printf '%-24s %8s  %-24s %-16s %s\n' case median "runs (wall s)" "CPU s (u+s)" result
# The floor under load: starting the binary from a dropped page cache.
times=()
for ((r = 1; r <= runs; r++)); do
	drop_caches
	timed /dev/null /dev/null as_pg "$bin" version
	times+=("$secs")
done
printf '%-24s %7ss  %-24s %s\n' "lifeboat version (floor)" "$(median "${times[@]}")" "${times[*]}" "no repository read"
where_list=(file)
[[ $s3 == yes ]] && where_list+=(s3)
for where in "${where_list[@]}"; do
	limit=1
	[[ $where == s3 ]] && limit=3
	for form in text json; do
		args=(info db)
		[[ $form == json ]] && args+=(--json)
		times=() codes=() cpus=()
		for ((r = 1; r <= runs; r++)); do
			drop_caches
			timed "$root/info-$where-$form.out" "$root/info-$where-$form.err" \
				/usr/bin/time -o "$root/cpu" -f '%U %S' runuser -u "$pguser" -- "$bin" -c "$root/info-$where.yaml" "${args[@]}"
			times+=("$secs")
			cpus+=("$(awk '{ printf "%.2f", $1 + $2 }' "$root/cpu")")
			codes+=("$rc")
		done
		med=$(median "${times[@]}")
		verdict=met
		awk -v m="$med" -v t="$limit" 'BEGIN { exit !(m < t) }' || verdict=missed
		[[ " ${codes[*]} " == *" 0 "* && " ${codes[*]} " != *" 1 "* ]] || verdict="missed (exit ${codes[*]}: $(head -1 "$root/info-$where-$form.err"))"
		printf '%-24s %7ss  %-24s %-16s %s (< %s s)\n' "info ($where, $form)" "$med" "${times[*]}" "${cpus[*]}" "$verdict" "$limit"
	done
	# What the JSON run reported, to check it saw the whole asset.
	jq -r '.[0].repositories[0] | "  \(.snapshots | length) snapshots, \(.restore_points | length) restore points, newest WAL \(.status.newest_wal), windows: \([(.windows // [])[] | "timeline \(.timeline): \(.earliest_time) .. \(.latest_time) exact=\(.latest_exact)"] | join("; "))"' \
		"$root/info-$where-json.out" || true
	if [[ $profile == yes ]]; then
		drop_caches
		as_pg "$bin" -c "$root/info-$where.yaml" --cpu-profile "$root/info-$where.pprof" info db >/dev/null
		echo "  CPU profile (cold cache): $root/info-$where.pprof"
		go tool pprof -top -nodecount=25 "$bin" "$root/info-$where.pprof" 2>/dev/null | sed 's/^/    /' | head -32
	fi
done
