#!/usr/bin/env bash
# A one-minute demonstration of Lifeboat's main job: back up a live PostgreSQL cluster, suffer an
# accident, and get the data back exactly as it was just before it (point-in-time recovery).
#
# Runs unattended on a fresh Debian machine (`make demo`), as root or as a normal user with sudo.
# Everything lives in a fresh /tmp/lifeboat-demo.XXXXXX directory that is kept for inspection;
# the servers it starts are stopped on exit. PostgreSQL refuses to run as root, so as root the
# clusters and lifeboat run as the unprivileged system user lifeboat-test.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pg_bin=/usr/lib/postgresql/15/bin
demo_user=lifeboat-test
export PATH=$PATH:/usr/local/go/bin
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
die() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

# --- 1. dependencies ----------------------------------------------------------------------------
step "checking dependencies (PostgreSQL 15, Go)"
if [[ $(id -u) -eq 0 ]]; then
	"$root_dir/scripts/install-test-deps.sh"
elif ! "$root_dir/scripts/install-test-deps.sh" 2>/dev/null; then
	# Installing needs root; sudo fails on its own (no prompt possible) when it needs a password
	# and there is no terminal.
	command -v sudo >/dev/null 2>&1 || die "packages are missing and sudo is not installed; run: sudo $root_dir/scripts/install-test-deps.sh"
	sudo "$root_dir/scripts/install-test-deps.sh"
fi
command -v runuser >/dev/null 2>&1 || [[ $(id -u) -ne 0 ]] || die "runuser (util-linux) is missing"

if [[ $(id -u) -eq 0 ]]; then
	run_user=$demo_user
	if ! getent passwd "$run_user" >/dev/null; then
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --comment "lifeboat tests (PostgreSQL refuses root)" "$run_user"
	fi
	as_user() { runuser -u "$run_user" -- "$@"; }
else
	run_user=$(id -un)
	as_user() { "$@"; }
fi

# --- leftovers of an earlier run ----------------------------------------------------------------
# Only directories carrying this script's marker are touched; their servers are stopped through
# their own postmaster.pid.
stop_cluster() { # stop_cluster DATADIR: stop a server of this demo, as the data directory's owner
	local data=$1 owner
	[[ -f $data/postmaster.pid ]] || return 0
	owner=$(stat -c %U "$data")
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u "$owner" -- "$pg_bin/pg_ctl" -D "$data" -m fast -t 30 stop >/dev/null 2>&1 || true
	elif [[ $owner == "$(id -un)" ]]; then
		"$pg_bin/pg_ctl" -D "$data" -m fast -t 30 stop >/dev/null 2>&1 || true
	fi
}
for old in /tmp/lifeboat-demo.*; do
	[[ -d $old && -f $old/.lifeboat-demo ]] || continue
	for data in "$old/primary" "$old/restored"; do
		[[ -d $data ]] && stop_cluster "$data"
	done
	if rm -rf "$old" 2>/dev/null; then
		echo "removed $old (an earlier demo run)"
	else
		echo "warning: could not remove $old (an earlier demo run by another user)" >&2
	fi
done

work=$(mktemp -d /tmp/lifeboat-demo.XXXXXX)
touch "$work/.lifeboat-demo"
chmod 755 "$work"
mkdir -p "$work/bin" "$work/sock"
if [[ $(id -u) -eq 0 ]]; then
	chown "$run_user:" "$work" "$work/sock" "$work/.lifeboat-demo"
fi
echo "work directory: $work (running PostgreSQL and lifeboat as user $run_user)"

primary_started=0
restored_started=0
on_exit() {
	local status=$?
	set +e
	if ((status != 0)); then
		echo >&2
		echo "FAIL: the demo stopped with exit status $status" >&2
		for log in "$work/primary.log" "$work/restored.log"; do
			if [[ -s $log ]]; then
				echo "--- last lines of $log ---" >&2
				tail -n 25 "$log" >&2
			fi
		done
	fi
	((restored_started)) && as_user "$pg_bin/pg_ctl" -D "$restored" -m fast -t 30 stop >/dev/null 2>&1
	((primary_started)) && as_user "$pg_bin/pg_ctl" -D "$primary" -m fast -t 30 stop >/dev/null 2>&1
	echo
	echo "servers stopped; the work directory $work is kept for inspection (policy, repository, key, logs)."
	exit "$status"
}
trap on_exit EXIT

step "building lifeboat"
# -buildvcs=false: git refuses to describe a checkout owned by another user (CI, a shared tree).
(cd "$root_dir" && go build -buildvcs=false -o "$work/bin/lifeboat" ./cmd/lifeboat)
chmod 755 "$work/bin" "$work/bin/lifeboat"
echo "built $work/bin/lifeboat ($("$work/bin/lifeboat" --version))"
# The run user may not be able to enter the source tree; run everything from the work directory.
cd "$work"

lifeboat_bin=$work/bin/lifeboat
policy=$work/lifeboat.yaml
primary=$work/primary
restored=$work/restored
sock=$work/sock

# free_port: a TCP port nobody listens on and whose socket name is unused in our socket directory.
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 20000))
		[[ -e $sock/.s.PGSQL.$p ]] && continue
		if ! timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$p" 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}
port=$(free_port)
port2=$(free_port)
while [[ $port2 == "$port" ]]; do port2=$(free_port); done

sql() { # sql PORT QUERY: one query, unaligned tuples-only output
	as_user "$pg_bin/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$sock" -p "$1" -U postgres -d postgres -c "$2"
}
lifeboat() { # lifeboat ARGS...: run the CLI with the demo policy, echoing the command
	printf '$ lifeboat %s\n' "$*"
	as_user "$lifeboat_bin" -c "$policy" "$@"
}


# --- 2. a cluster protected by lifeboat ---------------------------------------------------------
step "creating a PostgreSQL 15 cluster (data checksums on, port $port, socket in $sock)"
as_user "$pg_bin/initdb" -D "$primary" -U postgres --auth=trust -E UTF8 --locale=C --data-checksums --no-sync >"$work/initdb.log" 2>&1 ||
	{
		cat "$work/initdb.log" >&2
		die "initdb failed"
	}
cat >>"$primary/postgresql.conf" <<EOF

# added by lifeboat's demo
listen_addresses = ''
port = $port
unix_socket_directories = '$sock'
shared_buffers = 64MB
wal_level = replica
archive_mode = on
archive_command = '$lifeboat_bin -c $policy wal-push demo %p'
log_line_prefix = '%m [%p] '
EOF

cat >"$policy" <<EOF
# Lifeboat policy of the demo: one repository in the work directory, one PostgreSQL asset.
repositories:
  - name: local
    url: file://$work/repo
    key_file: $work/repo.key

tiers:
  critical: { rpo: 5m, rto: 1h }

assets:
  - name: demo
    kind: postgres
    tier: critical
    pgdata: $primary
    dsn: "host=$sock port=$port user=postgres dbname=postgres sslmode=disable"
    repositories: [local]
EOF
[[ $(id -u) -eq 0 ]] && chown "$run_user:" "$policy"
echo "policy $policy:"
sed 's/^/    /' "$policy"

step "creating the repository"
lifeboat repo init

step "starting the cluster (archive_command = lifeboat wal-push)"
primary_started=1
as_user "$pg_bin/pg_ctl" -D "$primary" -l "$work/primary.log" -w -t 60 start >/dev/null
sql "$port" "select version()"

# --- 3. sample data -----------------------------------------------------------------------------
step "loading sample data: 200,000 payments and pgbench -i -s 5"
sql "$port" "create table payments (
	id bigint primary key,
	account int not null,
	amount numeric(12,2) not null,
	created_at timestamptz not null)"
sql "$port" "insert into payments
	select g, 1 + (g * 7919) % 5000, round((random() * 1000)::numeric, 2),
	       timestamptz '2026-01-01 00:00:00+00' + g * interval '13 seconds'
	from generate_series(1, 200000) g"
as_user "$pg_bin/pgbench" -i -q -s 5 -h "$sock" -p "$port" -U postgres postgres 2>&1 | tail -n 1
sql "$port" "select 'payments: ' || count(*) || ' rows, database size ' || pg_size_pretty(pg_database_size('postgres')) from payments"

# --- 4. backups and an accident -----------------------------------------------------------------
step "taking a full backup"
lifeboat backup demo
lifeboat snapshots demo

step "business as usual: 20,000 more payments after the backup"
sql "$port" "insert into payments
	select g, 1 + (g * 7919) % 5000, round((random() * 1000)::numeric, 2), now()
	from generate_series(200001, 220000) g"

# The state to get back: the time T (after the last good commit) and a fingerprint of the table.
t=$(sql "$port" "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
fingerprint="md5(string_agg(p::text, '|' order by id))"
want_rows=$(sql "$port" "select count(*) from payments")
want_md5=$(sql "$port" "select $fingerprint from payments p")
echo "T = $t: payments has $want_rows rows, md5 $want_md5"
sleep 1

step "an accident: DELETE FROM payments WHERE id % 3 = 0 (a third of the payments are gone)"
sql "$port" "delete from payments where id % 3 = 0"
sql "$port" "select 'payments now has ' || count(*) || ' rows' from payments"

step "taking an incremental backup after the accident (only changed blocks are stored)"
lifeboat backup demo
lifeboat snapshots demo

step "switching WAL and waiting until it is archived"
sql "$port" "create table wal_marker as select now() as at" # the switch needs WAL to switch away from
seg=$(sql "$port" "select pg_walfile_name(pg_current_wal_lsn())")
sql "$port" "select pg_switch_wal()" >/dev/null
deadline=$((SECONDS + 60))
while :; do
	last=$(sql "$port" "select coalesce(last_archived_wal, '') from pg_stat_archiver")
	[[ $last == "$seg" || $last > "$seg" ]] && break
	if ((SECONDS > deadline)); then
		sql "$port" "select * from pg_stat_archiver" >&2
		die "WAL segment $seg was not archived within 60 s"
	fi
	sleep 0.2
done
sql "$port" "select 'archived ' || archived_count || ' WAL segments, last ' || last_archived_wal || ', ' || failed_count || ' failures' from pg_stat_archiver"

# --- 5. point-in-time recovery ------------------------------------------------------------------
step "restoring to T = $t into $restored"
lifeboat restore demo --to "$restored" --time "$t" --archive-off

step "starting the restored cluster on port $port2 (PostgreSQL replays archived WAL up to T)"
restored_started=1
as_user "$pg_bin/pg_ctl" -D "$restored" -l "$work/restored.log" -w -t 120 -o "-p $port2 -k $sock" start >/dev/null
deadline=$((SECONDS + 120))
until [[ $(sql "$port2" "select pg_is_in_recovery()") == f ]]; do
	((SECONDS <= deadline)) || die "the restored cluster was still in recovery after 120 s"
	sleep 0.2
done
echo "recovery finished and the restored cluster was promoted:"
grep -E 'recovery stopping|last completed transaction|selected new timeline' "$work/restored.log" | sed 's/^/    /' || true

step "comparing the restored payments with the state at T"
got_rows=$(sql "$port2" "select count(*) from payments")
got_md5=$(sql "$port2" "select $fingerprint from payments p")
printf '    %-10s %-8s %s\n' "" rows md5 "at T" "$want_rows" "$want_md5" restored "$got_rows" "$got_md5"
if [[ $got_rows != "$want_rows" || $got_md5 != "$want_md5" ]]; then
	die "the restored cluster differs from the state at T"
fi
echo "PASS: restored cluster matches the state at T ($got_rows rows)"

# --- 6. repository check ------------------------------------------------------------------------
step "verifying the repository, reading every byte"
lifeboat verify --read-data

echo
echo "demo finished in $((SECONDS - started)) s"
