#!/usr/bin/env bash
# Compares a public-key repository (repo init --recipient, docs/keys.md)
# with an ordinary one on the same cluster: full backup wall time, restore
# wall time and repository bytes, median of -runs runs (default 3), the page
# cache dropped before every measured step, the two modes interleaved in
# each run. Targets (issue 14): backup and restore within 10 % of the
# symmetric mode, repository bytes within 1 %.
#
#   bench/publickey.sh                 # pgbench scale 30 (about 450 MiB)
#   bench/publickey.sh -scale 100 -runs 5
#   bench/publickey.sh -identity passphrase   # the identity sealed by a
#                                      # passphrase (Argon2id) instead of a key file
#
# Repository bytes are those of the whole repository after the backup
# (packs, index, manifest, the backup's WAL). Restore wall includes the one
# unlock of the identity (Argon2id) a public-key restore makes; the restore's
# own "written in" time is printed too.
#
# Run as root (it drops the page cache; the cluster and Lifeboat run as
# postgres). Everything lives in -root (default /var/tmp/lifeboat-pk-bench),
# rebuilt at each start.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
# shellcheck source=bench/pgenv.sh
source bench/pgenv.sh
need_root

root=/var/tmp/lifeboat-pk-bench
scale=30 runs=3 identity=keyfile
while (($# > 0)); do
	case $1 in
	-identity) identity=$2 && shift ;;
	-root) root=$2 && shift ;;
	-scale) scale=$2 && shift ;;
	-runs) runs=$2 && shift ;;
	*)
		echo "publickey.sh: unknown flag $1 (see the comment at the top)" >&2
		exit 2
		;;
	esac
	shift
done

if [[ -d $root/data ]]; then
	runuser -u "$pguser" -- "$pgbin/pg_ctl" -D "$root/data" -m immediate -w stop >/dev/null 2>&1 || true
fi
rm -rf "$root"
install -d -o "$pguser" -m 755 "$root"
install -d -o "$pguser" -m 755 "$root/bin"
build_lifeboat "$root/bin"
bin=$root/bin/lifeboat
trap 'pg_stop' EXIT

pg_init
pg_start
sql "create table bench_t (id bigserial primary key)" >/dev/null
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -q -s "$scale" postgres >"$root/pgbench.log" 2>&1
size=$(sql "select pg_size_pretty(pg_database_size('postgres'))")
echo "cluster: pgbench scale $scale, $size"
# The WAL of the load goes nowhere: each mode's repository then holds the
# same WAL, that of its own backup.
set_archive_command "true"
sql "checkpoint" >/dev/null
switch_wait

# The identity of the public-key mode, made apart from the backup host.
keygen=(repo keygen --identity "$root/restore-host/identity" --recipient "$root/recipient")
unlock="identity_passphrase: bench-identity-passphrase"
if [[ $identity == keyfile ]]; then
	keygen+=(--key-file "$root/restore-host/identity.key")
	unlock="identity_key_file: $root/restore-host/identity.key"
fi
as_pg env LIFEBOAT_IDENTITY_PASSPHRASE=bench-identity-passphrase "$bin" "${keygen[@]}" >/dev/null
echo "identity sealed by: $identity"

drop_caches() { sync && echo 3 >/proc/sys/vm/drop_caches; }

# policy MODE FILE [IDENTITY]: the policy of one mode; with IDENTITY, the
# restore host's (identity_file and identity_passphrase).
policy() {
	local mode=$1 file=$2 extra=""
	if [[ ${3:-} == identity ]]; then
		extra=$'\n    identity_file: '"$root/restore-host/identity"$'\n    '"$unlock"
	fi
	as_pg tee "$file" >/dev/null <<YAML
state_dir: $root/$mode/state
repositories:
  - name: primary
    url: file://$root/$mode/repo
    key_file: $root/$mode/repo.key$extra
tiers:
  t: { rpo: 1h, rto: 1h }
assets:
  - name: db
    kind: postgres
    tier: t
    pgdata: $root/data
    dsn: "$(pg_dsn)"
    repositories: [primary]
YAML
}

declare -A backup restore bytes
for ((run = 1; run <= runs; run++)); do
	for mode in symmetric publickey; do
		as_pg rm -rf "$root/$mode"
		as_pg mkdir -p "$root/$mode"
		policy "$mode" "$root/$mode/host.yaml"
		policy "$mode" "$root/$mode/restore.yaml" identity
		init=(repo init)
		[[ $mode == publickey ]] && init+=(--recipient "$root/recipient")
		as_pg "$bin" -c "$root/$mode/host.yaml" "${init[@]}" >/dev/null
		set_archive_command "$bin -c $root/$mode/host.yaml wal-push db %p"
		switch_wait

		drop_caches
		timed "$root/$mode/backup.out" "$root/$mode/backup.err" as_pg "$bin" -c "$root/$mode/host.yaml" backup db --full
		[[ $rc -eq 0 ]] || { cat "$root/$mode/backup.err" >&2; exit 1; }
		backup[$mode]+=" $secs"
		b=$(du -sb --apparent-size "$root/$mode/repo" | cut -f1)
		bytes[$mode]+=" $b"

		target=$root/$mode/restored
		drop_caches
		timed "$root/$mode/restore.out" "$root/$mode/restore.err" as_pg "$bin" -c "$root/$mode/restore.yaml" restore db --to "$target" --archive-off
		[[ $rc -eq 0 ]] || { cat "$root/$mode/restore.err" >&2; exit 1; }
		restore[$mode]+=" $secs"
		as_pg rm -rf "$target"
		written=$(grep -o 'written in [0-9.]*[a-z]*' "$root/$mode/restore.out" || true)
		printf 'run %d %-9s backup %7.2f s  restore %7.2f s (%s)  repository %d bytes\n' "$run" "$mode" \
			"${backup[$mode]##* }" "$secs" "$written" "$b"
	done
done

verdict() { # NAME SYM PK LIMIT%
	awk -v n="$1" -v s="$2" -v p="$3" -v l="$4" 'BEGIN {
		d = (p - s) / s * 100
		printf "%-11s symmetric %12s  public-key %12s  %+6.2f %%  (target within %s %%): %s\n", n, s, p, d, l, (d <= l ? "met" : "NOT MET")
	}'
}
echo "median of $runs runs, page cache dropped before each step:"
# shellcheck disable=SC2086
verdict backup "$(median ${backup[symmetric]})" "$(median ${backup[publickey]})" 10
# shellcheck disable=SC2086
verdict restore "$(median ${restore[symmetric]})" "$(median ${restore[publickey]})" 10
# shellcheck disable=SC2086
verdict bytes "$(median ${bytes[symmetric]})" "$(median ${bytes[publickey]})" 1
