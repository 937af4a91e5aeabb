#!/usr/bin/env bash
# The runbook's RTO forecast against the next drill (issue 17, docs/runbook.md):
#
#   bench/runbook.sh                 # pgbench scale 50, 3 runs
#   SCALE=20 RUNS=5 bench/runbook.sh
#
# A PostgreSQL 15 ledger archiving into a file:// repository. Each run:
# drill the ledger (the drill the forecast learns from); grow the database
# by about a fifth (pgbench transactions and a table of GROW_MB) and back it
# up, as a week of production would; read the RTO forecast for the ledger
# from `lifeboat runbook --format json` (current size / the drill's
# throughput + its other phases); drill again and compare the forecast
# with that drill's measured RTO. Target: within 25 %. Prints each run and
# the medians of the runs.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
source bench/pgenv.sh

scale=${SCALE:-50}
runs=${RUNS:-3}
grow_mb=${GROW_MB:-150}
bench_root runbook
lb() { as_pg env HOME="$root/pghome" "$bin" -c "$root/lifeboat.yaml" "$@"; }

pg_init --data-checksums
echo "archive_command = '$bin -c $root/lifeboat.yaml wal-push ledger %p'" >>"$pgdata/postgresql.conf"
echo "shared_buffers = 64MB" >>"$pgdata/postgresql.conf"
cat >"$root/lifeboat.yaml" <<YAML
state_dir: $root/state
repositories:
  - name: primary
    url: file://$root/repo/primary
    key_file: $root/repo.key
tiers:
  tier1: { rpo: 5m, rto: 1h }
runbook: { path: $root/runbook.md }
assets:
  - name: ledger
    kind: postgres
    tier: tier1
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary]
    drill:
      point: latest
      checks:
        - name: ledger has rows
          sql: "select count(*) >= 1000 from pgbench_accounts"
YAML
chown "$pguser" "$root/lifeboat.yaml"
lb repo init >/dev/null
pg_start
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -q -s "$scale" postgres >"$root/pgbench.log" 2>&1
sql "create table bench_t (id serial primary key, at timestamptz default now())" >/dev/null
lb backup ledger >/dev/null
switch_wait

forecasts=() rtos=() errs=()
for ((run = 1; run <= runs; run++)); do
	lb drill ledger --json >"$root/drill-a.json" || true
	as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -n -t 2000 -c 2 postgres >>"$root/pgbench.log" 2>&1
	sql "create table grow_$run as select g, md5(g::text) || md5((g + 1)::text) as pad from generate_series(1, $((grow_mb * 10000))) g" >/dev/null
	lb backup ledger >/dev/null
	switch_wait
	lb runbook --format json >"$root/runbook.json"
	forecast=$(jq -r '[.tiers[].assets[] | select(.asset == "ledger")][0].forecast.forecast_seconds' "$root/runbook.json")
	size=$(jq -r '[.tiers[].assets[] | select(.asset == "ledger")][0].forecast.size_bytes' "$root/runbook.json")
	lb drill ledger --json >"$root/drill-b.json"
	rto=$(jq -r '.rto_seconds' "$root/drill-b.json")
	a_rto=$(jq -r '.rto_seconds' "$root/drill-a.json")
	err=$(python3 -c "print(f'{abs($forecast - $rto) / $rto * 100:.1f}')")
	printf 'run %d: size %s bytes, drill A RTO %.1f s, forecast %.1f s, drill B RTO %.1f s, error %s %%\n' "$run" "$size" "$a_rto" "$forecast" "$rto" "$err"
	for d in a b; do
		jq -r --arg d "$d" '"  drill \($d | ascii_upcase): \(.bytes) bytes, \(.wal_files // 0) WAL files, passed \(.passed), phases " + ([.phases[] | "\(.name) \(.seconds * 10 | round / 10)"] | join(", "))' "$root/drill-$d.json"
	done
	forecasts+=("$forecast") rtos+=("$rto") errs+=("$err")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
echo "median forecast $(median "${forecasts[@]}") s, median measured RTO $(median "${rtos[@]}") s, median error $(median "${errs[@]}") % (target: within 25 %)"
echo "load: $(uptime)"
