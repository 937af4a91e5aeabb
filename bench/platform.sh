#!/usr/bin/env bash
# The platform exercise on the seed platform's sample policy
# (docs/examples/seed-platform.yaml, docs/drills.md "Platform exercises"):
#
#   bench/platform.sh            # pgbench scale 20 for the ledger, 3 runs
#   SCALE=50 RUNS=5 bench/platform.sh
#
# Builds the platform locally: a PostgreSQL 15 ledger cluster archiving
# into the primary repository, a nightly pg_dump of a second database into
# the primary repository, the staging SQLite database, the configuration
# trees, the uploads and a git repository, every asset also copied
# (lifeboat copy) to offsite. Then, RUNS times, it plays the loss of the
# primary region: the primary repository is moved away and
# lifeboat drill --platform --fresh-host --repository offsite runs with a
# new HOME and state directory. Each run reports the platform RTO (until
# the last asset was back) against 1.3 × the slowest single asset's drill
# RTO in the same run (the member drills are single drills); the target
# is a ratio ≤ 1.3. Medians of the runs at the end.
#
# Adapted from the seed policy: local file:// repositories and paths; every
# asset also in offsite (a region-loss rehearsal needs every asset in the
# second region: the seed keeps staging-db, the dump and source in one
# region only, which the exercise would report as failures); the dump in
# primary rather than a dumps repository of its own (offsite copies
# primary, and a copy repository mirrors one primary only); the ledger's
# checks query pgbench's tables; no alerts, metrics or hooks.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
source bench/pgenv.sh

scale=${SCALE:-20}
runs=${RUNS:-3}
bench_root platform
lb() { as_pg env HOME="$root/pghome" "$bin" -c "$root/lifeboat.yaml" "$@"; }

pg_init --data-checksums
echo "archive_command = '$bin -c $root/lifeboat.yaml wal-push ledger %p'" >>"$pgdata/postgresql.conf"
echo "shared_buffers = 64MB" >>"$pgdata/postgresql.conf"
# The policy and the repositories first: the server archives from its
# first segment on.
cat >"$root/lifeboat.yaml" <<YAML
state_dir: $root/state
repositories:
  - name: primary
    url: file://$root/repo/primary
    key_file: $root/repo.key
  - name: offsite
    url: file://$root/repo/offsite
    key_file: $root/repo.key
tiers:
  tier1: { rpo: 5m, rto: 1h }
  tier2: { rpo: 1h, rto: 4h }
  tier3: { rpo: 24h, rto: 24h }
platform_drill:
  schedule: "CRON_TZ=Europe/Oslo 0 3 1 1,7 *"
  repository: offsite
  fresh_host: true
assets:
  - name: ledger
    kind: postgres
    tier: tier1
    pgdata: $pgdata
    dsn: "$(pg_dsn)"
    repositories: [primary, offsite]
    drill:
      point: latest
      checks:
        - name: ledger has rows
          sql: "select count(*) >= 1000 from pgbench_accounts"
        - name: balances add up
          sql: "select (select coalesce(sum(abalance), 0) from pgbench_accounts) = (select coalesce(sum(delta), 0) from pgbench_history)"
  - name: nightly-dump
    kind: pg_dump
    tier: tier2
    dsn: "host=$pgsock port=$pgport dbname=dropapp user=postgres sslmode=disable"
    exclude_table_data: [staff_sessions]
    repositories: [primary, offsite]
    drill:
      checks:
        - name: orders as dumped
          sql: "select count(*) from orders"
          expect: "= recorded"
  - name: staging-db
    kind: sqlite
    tier: tier3
    path: $root/srv/staging/drop.db
    repositories: [primary, offsite]
  - name: app-config
    kind: files
    tier: tier2
    paths: [$root/etc/drop, $root/srv/drop/config, $root/srv/infra]
    exclude: ["*.tmp", "*.swp", ".terraform/*"]
    repositories: [primary, offsite]
  - name: uploads
    kind: files
    tier: tier2
    paths: [$root/srv/drop/uploads]
    repositories: [primary, offsite]
  - name: source
    kind: git
    tier: tier3
    remotes: [$root/git/web]
    repositories: [primary, offsite]
YAML
chown "$pguser" "$root/lifeboat.yaml"
lb repo init >/dev/null
pg_start
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -i -q -s "$scale" postgres >"$root/pgbench.log" 2>&1
sql "create table bench_t (id serial primary key, at timestamptz default now())" "create database dropapp" >/dev/null
as_pg "$pgbin/psql" -h "$pgsock" -p "$pgport" -U postgres -d dropapp -XAtq -v ON_ERROR_STOP=1 \
	-c "create table orders (id bigint primary key, customer int, amount numeric, at timestamptz default now())" \
	-c "insert into orders (id, customer, amount) select g, g % 5000, g * 1.5 from generate_series(1, 200000) g" \
	-c "create table staff_sessions (id int primary key, token text)" \
	-c "insert into staff_sessions select g, md5(g::text) from generate_series(1, 1000) g"

# The staging SQLite database, configuration, uploads and source.
as_pg install -d "$root/srv/staging" "$root/etc/drop" "$root/srv/drop/config" "$root/srv/infra" "$root/srv/drop/uploads" "$root/git"
as_pg sqlite3 "$root/srv/staging/drop.db" \
	"create table users (id integer primary key, name text); with recursive n(i) as (select 1 union all select i + 1 from n where i < 50000) insert into users select i, hex(randomblob(16)) from n;"
for f in app.yaml bank.yaml integrations.yaml; do as_pg sh -c "head -c 4096 /dev/urandom | base64 >'$root/etc/drop/$f'"; done
as_pg sh -c "for i in \$(seq 1 200); do head -c 2048 /dev/urandom | base64 >'$root/srv/infra/main-\$i.tf'; done"
as_pg sh -c "for i in \$(seq 1 40); do head -c 1048576 /dev/urandom >'$root/srv/drop/uploads/doc-\$i.pdf'; done"
as_pg sh -c "cd '$root/git' && git init -q -b main web && cd web && for i in \$(seq 1 20); do head -c 20000 /dev/urandom | base64 >file-\$i.txt; git add -A && git -c user.name=b -c user.email=b@example.com commit -qm c\$i; done"

for a in ledger nightly-dump staging-db app-config uploads source; do lb backup "$a" >/dev/null; done
as_pg "$pgbin/pgbench" -h "$pgsock" -p "$pgport" -U postgres -n -T 10 -c 2 postgres >>"$root/pgbench.log" 2>&1
switch_wait
lb copy >/dev/null

echo "platform exercise, seed platform (pgbench scale $scale), from offsite with --fresh-host; load: $(uptime | sed 's/.*load average: //')"
printf '%-4s %-12s %-22s %-10s %s\n' run platform_rto slowest_asset_rto ratio "tiers (back after)"
rtos=() slowest=() ratios=()
for ((i = 1; i <= runs; i++)); do
	# The primary region is lost: a new host with only the policy and the
	# copy's key.
	mv "$root/repo/primary" "$root/repo/primary.lost"
	fresh=$root/fresh-$i
	as_pg install -d -m 700 "$fresh" "$fresh/home" "$fresh/work"
	sed "s|^state_dir: .*|state_dir: $fresh/state|" "$root/lifeboat.yaml" >"$fresh/lifeboat.yaml"
	chown "$pguser" "$fresh/lifeboat.yaml"
	set +e
	as_pg env HOME="$fresh/home" "$bin" -c "$fresh/lifeboat.yaml" drill --platform --json --work-dir "$fresh/work" >"$fresh/report.json" 2>"$fresh/stderr"
	rc=$?
	set -e
	mv "$root/repo/primary.lost" "$root/repo/primary"
	if [[ $rc -ne 0 ]]; then
		echo "run $i: the exercise failed (exit $rc):" >&2
		cat "$fresh/stderr" >&2
		jq -r '.issues[]?' "$fresh/report.json" >&2 || true
		exit 1
	fi
	if [[ -n $(ls -A "$fresh/work") ]]; then
		echo "run $i: throwaway targets left in $fresh/work" >&2
		exit 1
	fi
	p=$(jq -r '.rto_seconds' "$fresh/report.json")
	s=$(jq -r '[.members[].rto_seconds] | max' "$fresh/report.json")
	slow=$(jq -r '.members | max_by(.rto_seconds) | .asset' "$fresh/report.json")
	r=$(awk -v p="$p" -v s="$s" 'BEGIN { printf "%.3f", p / s }')
	tiers=$(jq -r '[.tiers[] | "\(.tier) \(.rto_seconds)s"] | join(", ")' "$fresh/report.json")
	printf '%-4s %-12s %-22s %-10s %s\n' "$i" "${p}s" "${s}s ($slow)" "$r" "$tiers"
	jq -r '.members[] | "       \(.asset) (\(.kind), \(.tier)): RTO \(.rto_seconds)s"' "$fresh/report.json"
	rtos+=("$p") slowest+=("$s") ratios+=("$r")
done
mr=$(median "${ratios[@]}")
echo "median: platform RTO $(median "${rtos[@]}")s, slowest asset $(median "${slowest[@]}")s, ratio $mr (target ≤ 1.3: $(awk -v r="$mr" 'BEGIN { print (r <= 1.3) ? "met" : "MISSED" }'))"
echo "load after: $(uptime | sed 's/.*load average: //')"
