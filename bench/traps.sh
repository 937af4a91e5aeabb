#!/usr/bin/env bash
# Times how long Lifeboat takes to refuse each first-day trap of issue 13
# (see docs/benchmarks.md, "First-day traps and lifeboat info"): a throwaway PostgreSQL
# 15 cluster and a file:// repository, each trap provoked and the command
# run three times; prints the median wall time, the exit code, the line
# Lifeboat printed and met/missed against the 2 s target.
#
#   bench/traps.sh                 # every trap
#   bench/traps.sh -keep           # keep the bench directory for a look afterwards
#
# Run as root: the cluster and Lifeboat run as postgres, and one trap runs
# Lifeboat as root against postgres's repository. Takes two to three minutes
# (more when the end-of-backup WAL wait does not give up early: that case
# is cut off after $wait_limit s).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=bench/pgenv.sh
source bench/pgenv.sh
need_root

keep=no
[[ ${1:-} == -keep ]] && keep=yes
runs=3
target=2
wait_limit=${TRAPS_WAIT_LIMIT:-30}

root=$(mktemp -d /var/tmp/lifeboat-traps.XXXXXX)
chmod 755 "$root"
chown "$pguser" "$root" # repo init writes the key file next to the policy
cleanup() {
	pg_stop
	if [[ $keep == yes ]]; then
		echo "kept $root" >&2
	else
		rm -rf "$root"
	fi
}
trap cleanup EXIT

bin=$root/bin/lifeboat
mkdir -p "$root/bin"
build_lifeboat "$root/bin"
commit=$(git rev-parse --short HEAD)
dirty=$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no | wc -l)

pg_init
repo=$root/repo
policy=$root/lifeboat.yaml
gate=$root/archive-gate
install -d -o "$pguser" -m 700 "$repo" "$root/state" "$root/work"
write_policy() { # write_policy [with-state|no-state]
	local state="state_dir: $root/state"
	[[ ${1:-with-state} == no-state ]] && state="# no state_dir: the default applies"
	cat >"$policy" <<YAML
$state
repositories:
  - name: primary
    url: file://$repo
    key_file: $root/repo.key
assets:
  - name: db
    kind: postgres
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary]
YAML
	chown "$pguser" "$policy"
	chmod 600 "$policy"
}
write_policy
good_archive="$bin -c $policy wal-push db %p"
echo "archive_command = '$good_archive'" >>"$pgdata/postgresql.conf"
pg_start
lb() { as_pg "$bin" -c "$policy" "$@"; }
lb repo init >/dev/null
sql "create table bench_t (id serial primary key, at timestamptz not null default now())"
switch_wait
lb backup db >/dev/null
lb restore-point db before-the-traps >/dev/null
switch_wait

# The repository's files and sizes: a refusal must leave them as they
# were. audit/ is left out: every command, refused or not, appends its
# record to the repository's audit chain.
fingerprint() { find "$repo" -type f -not -path "$repo/audit/*" -printf '%P %s\n' | sort | md5sum | cut -d' ' -f1; }

names=() medians=() codes=() lines=() verdicts=() unchanged=() messages=()

# measure NAME EXPECT PATTERN BEFORE CMD...: runs CMD $runs times, BEFORE
# (a function, or :) untimed before each run. EXPECT is refuse (non-zero
# exit, one line on stderr containing PATTERN) or succeed (exit 0 and a
# line containing PATTERN). The median wall time must be under $target s.
measure() {
	local name=$1 expect=$2 pattern=$3 before=$4 i times=() codes_seen=() same=yes msg nlines ok=yes med fp
	shift 4
	for ((i = 1; i <= runs; i++)); do
		$before
		fp=$(fingerprint)
		timed "$root/out" "$root/err" "$@"
		times+=("$secs")
		codes_seen+=("$rc")
		case $expect in
		refuse) [[ $rc -ne 0 ]] || ok=no ;;
		succeed) [[ $rc -eq 0 ]] || ok=no ;;
		esac
		nlines=$(grep -c . "$root/err" || true)
		grep -q -F -- "$pattern" "$root/err" "$root/out" || ok=no
		# Every line the last run printed on stderr.
		msg=$(grep . "$root/err" | sed '2,$s/^/  /' || echo "(nothing on stderr)")
		[[ $expect == refuse && $nlines -ne 1 ]] && ok=no
		[[ $(fingerprint) == "$fp" ]] || same=no
	done
	med=$(median "${times[@]}")
	awk -v m="$med" -v t="$target" 'BEGIN { exit !(m < t) }' || ok=no
	names+=("$name")
	medians+=("$med")
	codes+=("$(
		IFS=,
		echo "${codes_seen[*]}"
	)")
	lines+=("$nlines")
	unchanged+=("$same")
	verdicts+=("$([[ $ok == yes ]] && echo met || echo missed)")
	messages+=("$msg")
	printf '%-34s %6ss  exit %-6s %s\n' "$name" "$med" "${codes[-1]}" "${verdicts[-1]}" >&2
}

# --- restores that cannot be reached ----------------------------------
future=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
no_target() { rm -rf "$root/work/restored"; }
measure "restore --time in the future" refuse "is not before the newest commit" no_target \
	lb restore db --to "$root/work/restored" --time "$future"
[[ ! -e $root/work/restored ]] || echo "restore --time left $root/work/restored behind" >&2
measure "restore --name never recorded" refuse "was never recorded" no_target \
	lb restore db --to "$root/work/restored" --name never-made
[[ ! -e $root/work/restored ]] || echo "restore --name left $root/work/restored behind" >&2

# --- archiving not set up ----------------------------------------------
set_archive_command ""
measure "empty archive_command" refuse "archive_command is empty" : lb backup db
set_archive_command "$bin -c $policy wal-push other %p"
measure "archive_command for another asset" refuse 'archives into asset "other"' : lb backup db
set_archive_command "$good_archive"

sql "alter system set archive_mode = off" >/dev/null
pg_restart
measure "archive_mode off" refuse "archive_mode is off" : lb backup db
sql "alter system reset archive_mode" >/dev/null
pg_restart
switch_wait

# --- the wrong user, a repository that cannot be written ----------------
dirmodes=$root/dirmodes
find "$repo" -type d -printf '%m %p\n' >"$dirmodes"
find "$repo" -type d -exec chmod 0555 {} +
measure "read-only repository (dirs 0555)" refuse "permission" : lb backup db
while read -r mode dir; do chmod "$mode" "$dir"; done <"$dirmodes"

measure "repository owned by another user" refuse "runuser -u $pguser" : "$bin" -c "$policy" backup db
# Whatever root made in the state directory would trip up postgres's runs.
if [[ -n $(find "$root/state" -uid 0 -print -quit) ]]; then
	echo "the run as root left root-owned files in $root/state: $(find "$root/state" -uid 0 | head -3 | tr '\n' ' ')" >&2
	chown -R "$pguser" "$root/state"
fi

# --- first-run defaults: no state_dir --------------------------------------
# The policy loses state_dir (the archiver's wal-push uses it too, with
# HOME in $root/pghome); the backup runs as postgres with a fresh HOME, so
# /var/lib/lifeboat is not writable and the user's state directory is made.
write_policy no-state
fresh_home() {
	rm -rf "$root/home"
	install -d -o "$pguser" -m 700 "$root/home"
}
nostate_backup() { as_pg env -u XDG_STATE_HOME HOME="$root/home" "$bin" -c "$policy" backup db; }
measure "no state_dir, default not writable" succeed "keeping state in" fresh_home nostate_backup
write_policy with-state

# --- a failing archiver ---------------------------------------------------
# archive_command succeeds until the gate file exists.
set_archive_command "test ! -f $gate && $good_archive"
switch_wait
archiver_failing() {
	local seg i
	seg=$(sql "insert into bench_t default values" "select pg_walfile_name(pg_current_wal_lsn())")
	sql "select pg_switch_wal()" >/dev/null
	for ((i = 0; i < 600; i++)); do
		[[ $(sql "select coalesce(last_failed_wal, '') >= '$seg' from pg_stat_archiver") == t ]] && return 0
		sleep 0.1
	done
	echo "the archiver did not fail on $seg" >&2
	return 1
}
touch "$gate"
archiver_failing
measure "failing archiver (pg_stat_archiver)" refuse "the archiver is failing" : lb backup db
rm -f "$gate"
switch_wait

# The archiver starts failing after pre-flight passed: the backup's own
# last segment cannot be archived. Cut off after $wait_limit s.
gate_after_archive() {
	rm -f "$gate"
	switch_wait
	touch "$gate"
}
measure "archiver fails during the WAL wait" refuse "the archiver failed on WAL segment" gate_after_archive \
	as_pg timeout "$wait_limit" "$bin" -c "$policy" backup db
rm -f "$gate"
switch_wait

# --- report -------------------------------------------------------------
echo
echo "Lifeboat at $commit ($dirty modified tracked files), PostgreSQL $(sql "show server_version"), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-36s %8s  %-8s %-6s %-9s %s\n' trap median exit lines unchanged target
# unchanged: the repository's files (audit/ aside) as before each run.
for i in "${!names[@]}"; do
	printf '%-36s %7ss  %-8s %-6s %-9s %s (< %s s)\n' "${names[$i]}" "${medians[$i]}" "${codes[$i]}" "${lines[$i]}" "${unchanged[$i]}" "${verdicts[$i]}" "$target"
done
echo
for i in "${!names[@]}"; do
	echo "${names[$i]}:"
	echo "  ${messages[$i]}"
done
