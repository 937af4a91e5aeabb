#!/usr/bin/env bash
# Measures the fleet's leader failover (issue 15: fleet duties resume
# within 30 s of the leader's death; docs/fleet.md, "Leadership"): three
# real `lifeboat serve` agents on one PostgreSQL catalog, with the default
# leadership intervals, through TestFleetServeLeaderFailover. Each case
# runs three times and prints the median:
#
#   kill   the leader is SIGKILLed: its connection closes with it
#   stop   the leader is SIGSTOPped: it hangs, its kernel keeps the
#          connection and the lock alive, and the other agents must
#          evict it (the same wait as for a host that vanished without
#          closing its connection, which the server's keepalives end)
#
#   bench/fleet-failover.sh            # both cases
#   bench/fleet-failover.sh kill       # one
#
# Runs as root or not (the tests re-execute as an unprivileged user).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
cases=("${@:-kill stop}")
read -r -a cases <<<"${cases[*]}"
runs=3
target=30

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for c in "${cases[@]}"; do
	times=()
	for ((i = 1; i <= runs; i++)); do
		out=$(LIFEBOAT_FLEET_KILL=$c go test ./cmd/lifeboat -run '^TestFleetServeLeaderFailover$' -count=1 -v 2>&1) || {
			echo "$out" | tail -40 >&2
			echo "run $i of $c failed" >&2
			exit 1
		}
		t=$(echo "$out" | sed -n 's/.*fleet duties \([0-9.]*\)\(m\?s\) after.*/\1 \2/p' | awk '{ if ($2 == "ms") print $1/1000; else print $1 }')
		echo "$c run $i: ${t}s"
		times+=("$t")
	done
	m=$(printf '%s\n' "${times[@]}" | median)
	verdict=met
	awk -v m="$m" -v t="$target" 'BEGIN { exit !(m > t) }' && verdict=missed
	echo "$c: median ${m}s (runs: ${times[*]}), target ${target}s: $verdict"
done
echo "load: $(uptime)"
