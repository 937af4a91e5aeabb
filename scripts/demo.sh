#!/usr/bin/env bash
# A one-minute demonstration of Lifeboat's main job: back up a live PostgreSQL cluster, suffer an
# accident, and get the data back exactly as it was just before it (point-in-time recovery).
#
# Runs unattended on a fresh Debian machine (`make demo`), as root or as a normal user with sudo.
# It needs Go and a PostgreSQL server of version 15 or newer; only when no server is present does
# it install one (postgresql-15, or the distribution's postgresql), and nothing else.
# PG_BIN=/usr/lib/postgresql/16/bin chooses the server; by default the newest one installed.
#
# About 15 s with a warm Go build cache; with an empty one the build of lifeboat (which runs while
# the cluster is created and loaded) makes it about 100 s on 2 cores.
#
# Everything lives in a fresh /tmp/lifeboat-demo.XXXXXX directory and on ports nobody listens
# on, so two demos on one machine do not meet. On exit, an interrupt included, the demo stops
# what it started (its build, its servers) and removes its directory; after a failure, or with
# LIFEBOAT_DEMO_KEEP=1, the directory is kept for inspection. It never touches another run's.
# PostgreSQL refuses to run as root, so as root the clusters and lifeboat run as the
# unprivileged system user lifeboat-test.
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo_user=lifeboat-test
export PATH=$PATH:/usr/local/go/bin
started=$SECONDS

step() { printf '\n==> [%3d s] %s\n' "$((SECONDS - started))" "$*"; }
die() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}
as_root() { # as_root CMD...: run a command as root, through sudo when not root
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	else
		# sudo fails on its own (no prompt possible) when it needs a password and there is no terminal.
		command -v sudo >/dev/null 2>&1 || die "this needs root and sudo is not installed: run as root: $*"
		sudo "$@"
	fi
}

# --- 1. dependencies ----------------------------------------------------------------------------
step "checking dependencies (Go, PostgreSQL 15 or newer)"
command -v go >/dev/null 2>&1 ||
	die "the Go toolchain is missing: install the Go version named in go.mod (https://go.dev/dl/) and put it in PATH"

# find_pg_bin: the newest installed PostgreSQL (15 or newer) that has everything the demo runs.
find_pg_bin() {
	local dir major best="" best_major=0 p ok
	for dir in /usr/lib/postgresql/*/bin; do
		major=${dir#/usr/lib/postgresql/}
		major=${major%/bin}
		[[ $major =~ ^[0-9]+$ ]] && ((major >= 15 && major > best_major)) || continue
		ok=1
		for p in initdb pg_ctl postgres psql pgbench; do
			[[ -x $dir/$p ]] || ok=0
		done
		((ok)) && best=$dir best_major=$major
	done
	[[ -n $best ]] && echo "$best"
}
if [[ -n ${PG_BIN:-} ]]; then
	pg_bin=$PG_BIN
	for p in initdb pg_ctl postgres psql pgbench; do
		[[ -x $pg_bin/$p ]] || die "PG_BIN=$pg_bin has no $p"
	done
elif ! pg_bin=$(find_pg_bin); then
	echo "no PostgreSQL server (15 or newer) in /usr/lib/postgresql: installing one"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	pkg=postgresql-15
	apt-cache show "$pkg" >/dev/null 2>&1 || pkg=postgresql
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
	pg_bin=$(find_pg_bin) || die "installed $pkg but found no PostgreSQL 15 or newer in /usr/lib/postgresql"
fi
pg_major=$("$pg_bin/postgres" --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')
echo "PostgreSQL: $("$pg_bin/postgres" --version) ($pg_bin); Go: $(go env GOVERSION)"

if [[ $(id -u) -eq 0 ]]; then
	command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is missing"
	run_user=$demo_user
	if ! getent passwd "$run_user" >/dev/null; then
		command -v useradd >/dev/null 2>&1 || die "useradd (passwd) is missing: it creates the user $run_user the servers run as"
		useradd --system --user-group --no-create-home --home-dir /nonexistent \
			--shell /usr/sbin/nologin --comment "lifeboat tests (PostgreSQL refuses root)" "$run_user"
	fi
	as_user() { runuser -u "$run_user" -- "$@"; }
else
	run_user=$(id -un)
	as_user() { "$@"; }
fi

work=$(mktemp -d /tmp/lifeboat-demo.XXXXXX)
chmod 755 "$work"
mkdir -p "$work/bin" "$work/sock"
if [[ $(id -u) -eq 0 ]]; then
	chown "$run_user:" "$work" "$work/sock"
fi
echo "work directory: $work (running PostgreSQL and lifeboat as user $run_user)"

primary_started=0
restored_started=0
interrupted=0
build_pid=
on_exit() {
	local status=$?
	set +e
	if ((status != 0)); then
		echo >&2
		if ((interrupted)); then
			echo "the demo was interrupted" >&2
		else
			echo "FAIL: the demo stopped with exit status $status" >&2
		fi
		((interrupted)) || for log in "$work/primary.log" "$work/restored.log"; do
			if [[ -s $log ]]; then
				echo "--- last lines of $log ---" >&2
				tail -n 25 "$log" >&2
			fi
		done
	fi
	# Only what this run started: its build, and its servers through their own data directories.
	[[ -n $build_pid ]] && kill -- "-$build_pid" 2>/dev/null && wait "$build_pid" 2>/dev/null
	((restored_started)) && as_user "$pg_bin/pg_ctl" -D "$restored" -m fast -t 30 stop >/dev/null 2>&1
	((primary_started)) && as_user "$pg_bin/pg_ctl" -D "$primary" -m fast -t 30 stop >/dev/null 2>&1
	echo
	if ((status == 0 || interrupted)) && [[ ${LIFEBOAT_DEMO_KEEP:-0} == 0 ]]; then
		cd /
		rm -rf "$work"
		echo "servers stopped, $work removed (LIFEBOAT_DEMO_KEEP=1 keeps it)"
	else
		echo "servers stopped; $work is kept for inspection (policy, repository, key, logs): rm -rf $work"
	fi
	exit "$status"
}
trap on_exit EXIT
# An interrupt ends the run through on_exit too, which removes what an interrupted run leaves.
trap 'interrupted=1; exit 130' INT
trap 'interrupted=1; exit 143' TERM

# The build (a minute or two with an empty Go build cache) runs while the cluster is created and
# loaded, which needs no Lifeboat: the cluster keeps its WAL (archive_mode = on with no
# archive_command yet) until Lifeboat archives it.
step "building lifeboat in the background; meanwhile, the cluster"
# Stamped with this checkout's version and commit like a release, but built like `go build`, so
# it shares the build cache with go build ./... and the tests (scripts/release.sh).
# In a process group of its own, which an interrupted run stops whole (go and its compilers).
setsid "$root_dir/scripts/release.sh" dev "$work/bin/lifeboat" >"$work/build.log" 2>&1 &
build_pid=$!
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

# --- 2. a cluster with sample data --------------------------------------------------------------
step "creating a PostgreSQL $pg_major cluster (data checksums on, port $port, socket in $sock)"
as_user "$pg_bin/initdb" -D "$primary" -U postgres --auth=trust -E UTF8 --locale=C --data-checksums --no-sync >"$work/initdb.log" 2>&1 ||
	{
		cat "$work/initdb.log" >&2
		die "initdb failed"
	}
cat >>"$primary/postgresql.conf" <<CONF

# added by lifeboat's demo
listen_addresses = ''
port = $port
unix_socket_directories = '$sock'
shared_buffers = 64MB
wal_level = replica
archive_mode = on
log_line_prefix = '%m [%p] '
CONF
primary_started=1
as_user "$pg_bin/pg_ctl" -D "$primary" -l "$work/primary.log" -w -t 60 start >/dev/null
sql "$port" "select version()"

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

# --- 3. lifeboat protects it --------------------------------------------------------------------
step "waiting for the build of lifeboat"
if ! wait "$build_pid"; then
	build_pid=
	cat "$work/build.log" >&2
	die "building lifeboat failed"
fi
build_pid=
chmod 755 "$work/bin" "$work/bin/lifeboat"
"$lifeboat_bin" version

cat >"$policy" <<POLICY
# Lifeboat policy of the demo: one repository in the work directory, one PostgreSQL asset.
state_dir: $work/state

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
POLICY
[[ $(id -u) -eq 0 ]] && chown "$run_user:" "$policy"
echo "policy $policy:"
sed 's/^/    /' "$policy"

step "creating the repository"
lifeboat repo init

archive_command="$lifeboat_bin -c $policy wal-push demo %p"
step "archiving WAL through lifeboat: archive_command = '$archive_command'"
printf "archive_command = '%s'\n" "$archive_command" >>"$primary/postgresql.conf"
as_user "$pg_bin/pg_ctl" -D "$primary" reload >/dev/null
deadline=$((SECONDS + 30))
until [[ $(sql "$port" "show archive_command") == "$archive_command" ]]; do
	((SECONDS <= deadline)) || die "the cluster did not take the new archive_command within 30 s"
	sleep 0.1
done

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
