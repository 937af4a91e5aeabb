#!/usr/bin/env bash
# Measures what an idle `lifeboat serve` costs: 50 assets scheduled daily,
# a primary and a copy repository on local disk, the health check every
# check.interval (default 1m). Prints the daemon's CPU time and resident
# memory after the given number of seconds (default 180, three checks).
#
#   bench/idle.sh [SECONDS]
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
secs=${1:-180}
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
go build -o "$tmp/lifeboat" "$repo_root/cmd/lifeboat"

{
	cat <<YAML
state_dir: $tmp/state
repositories:
  - { name: primary, url: "file://$tmp/repo", key_file: $tmp/repo.key }
  - { name: dr, url: "file://$tmp/dr", key_file: $tmp/dr.key }
assets:
YAML
	for i in $(seq 1 50); do
		cat <<YAML
  - name: app$i
    kind: sqlite
    path: $tmp/app$i.db
    repositories: [primary, dr]
    schedule: "CRON_TZ=UTC 30 3 * * *"
YAML
	done
} >"$tmp/lifeboat.yaml"
"$tmp/lifeboat" -c "$tmp/lifeboat.yaml" repo init >/dev/null

"$tmp/lifeboat" -c "$tmp/lifeboat.yaml" serve 2>"$tmp/serve.log" &
pid=$!
sleep 5 # start-up and the first check, which are not idle
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
sleep "$secs"
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
checks=$(grep -c 'check failed' "$tmp/serve.log" || true)
awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$hz" -v secs="$secs" -v rss="$rss" -v checks="$checks" 'BEGIN {
	cpu = (u + s) / hz
	printf "idle serve, 50 assets, %d s: CPU %.2f s (%.3f%% of a core), RSS %.1f MiB, %d failed-check log lines\n",
		secs, cpu, 100 * cpu / secs, rss / 1024, checks
}'
