# Sourced by the bench scripts (traps, info, stream, delta, ...): a throwaway PostgreSQL 15
# cluster in $root run as the user postgres, Lifeboat run as that user, and
# timing helpers. The caller sets root (a directory postgres can enter) and
# bin (the lifeboat binary) before calling anything here.

pgbin=${LIFEBOAT_PG_BIN:-/usr/lib/postgresql/15/bin}
pguser=postgres

need_root() {
	if [[ $(id -u) -ne 0 ]]; then
		echo "$(basename "$0"): run as root: the cluster and Lifeboat run as $pguser, and some cases need a second user" >&2
		exit 1
	fi
	if [[ ! -x $pgbin/initdb ]]; then
		echo "$(basename "$0"): PostgreSQL 15 is missing in $pgbin (apt-get install postgresql-15)" >&2
		exit 1
	fi
	id "$pguser" >/dev/null
}

# bench_root NAME: the common start of a script run as root: a fresh $root
# (/var/tmp/lifeboat-NAME.XXXXXX) the cluster's user can enter, removed with
# the cluster on exit, and lifeboat built from the tree at $repo_root into
# $root/bin ($bin).
bench_root() {
	need_root
	root=$(mktemp -d "/var/tmp/lifeboat-$1.XXXXXX")
	chmod 755 "$root"
	chown "$pguser" "$root"
	bin=$root/bin/lifeboat
	trap 'pg_stop; rm -rf "$root"' EXIT
	mkdir -p "$root/bin"
	(cd "$repo_root" && build_lifeboat "$root/bin")
}

# build_lifeboat DIR: builds ./cmd/lifeboat of this tree into DIR/lifeboat.
build_lifeboat() {
	go build -o "$1/lifeboat" ./cmd/lifeboat
	chmod 755 "$1" "$1/lifeboat"
}

as_pg() { runuser -u "$pguser" -- "$@"; }

# pg_init [initdb args...]: a cluster in $root/data, reachable only on the
# socket in $root/sock; the server's HOME is $root/pghome so that whatever
# its archive_command writes under HOME stays inside $root.
pg_init() {
	pgdata=$root/data pgsock=$root/sock pgport=5432 pghome=$root/pghome
	install -d -o "$pguser" -m 700 "$pgsock" "$pghome"
	as_pg "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust --no-sync "$@" >"$root/initdb.log"
	cat >>"$pgdata/postgresql.conf" <<CONF
listen_addresses = ''
port = $pgport
unix_socket_directories = '$pgsock'
wal_level = replica
archive_mode = on
archive_timeout = 0
max_wal_senders = 2
log_min_messages = warning
CONF
}

# pg_policy [ASSET-LINES]: after pg_init, a policy $root/lb.yaml whose one
# postgres asset "bench" (plus ASSET-LINES, indented as its keys) is backed
# up into the file repository $root/repo, the repository initialised, and
# the cluster archiving into it with lifeboat wal-push ($bin).
pg_policy() {
	install -d -o "$pguser" -m 700 "$root/state"
	cat >"$root/lb.yaml" <<YAML
state_dir: $root/state
repositories:
  - name: primary
    url: file://$root/repo
    key_file: $root/lb.key
assets:
  - name: bench
    kind: postgres
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary]
${1:-}
YAML
	chown "$pguser" "$root/lb.yaml"
	as_pg "$bin" -c "$root/lb.yaml" repo init >/dev/null
	echo "archive_command = '$bin -c $root/lb.yaml wal-push bench %p'" >>"$pgdata/postgresql.conf"
}

pg_start() { as_pg env HOME="$pghome" "$pgbin/pg_ctl" -D "$pgdata" -l "$root/pg.log" -w -t 120 start >/dev/null; }
pg_stop() { as_pg "$pgbin/pg_ctl" -D "$pgdata" -m fast -w -t 120 stop >/dev/null 2>&1 || true; }
pg_restart() { as_pg env HOME="$pghome" "$pgbin/pg_ctl" -D "$pgdata" -l "$root/pg.log" -m fast -w -t 120 restart >/dev/null; }
pg_dsn() { echo "host=$pgsock port=$pgport user=postgres dbname=postgres sslmode=disable"; }

# sql STATEMENT...: each statement in order in one session; prints the
# unaligned output.
sql() {
	local args=() s
	for s in "$@"; do args+=(-c "$s"); done
	as_pg "$pgbin/psql" -h "$pgsock" -p "$pgport" -U postgres -d postgres -XAtq -v ON_ERROR_STOP=1 "${args[@]}"
}

# set_archive_command CMD: sets archive_command and waits until the server
# reloaded it.
set_archive_command() {
	local cmd=$1 i
	sql "alter system set archive_command = '${cmd//\'/\'\'}'" "select pg_reload_conf()" >/dev/null
	for ((i = 0; i < 200; i++)); do
		[[ $(sql "show archive_command") == "$cmd" ]] && return 0
		sleep 0.05
	done
	echo "archive_command did not reload" >&2
	return 1
}

# switch_wait: commits a row, ends the WAL segment and waits until the
# archiver reports it archived (60 s at most).
switch_wait() {
	local seg i
	seg=$(sql "insert into bench_t default values" "select pg_walfile_name(pg_current_wal_lsn())")
	sql "select pg_switch_wal()" >/dev/null
	for ((i = 0; i < 600; i++)); do
		[[ $(sql "select coalesce(last_archived_wal, '') >= '$seg' from pg_stat_archiver") == t ]] && return 0
		sleep 0.1
	done
	echo "segment $seg was not archived within 60 s (see $root/pg.log)" >&2
	return 1
}

# timed OUT ERR CMD...: runs CMD, its output to OUT and ERR; sets rc and
# secs (wall time).
timed() {
	local out=$1 err=$2 t0 t1
	shift 2
	t0=$EPOCHREALTIME
	set +e
	"$@" >"$out" 2>"$err"
	rc=$?
	set -e
	t1=$EPOCHREALTIME
	secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
}

# median X...: the median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
