#!/usr/bin/env bash
# Measures the audit trail's cost (docs/audit.md, docs/benchmarks.md):
#
#   bench/audit.sh            # verify over 2 million events, and the overhead
#   bench/audit.sh verify -events 200000
#   bench/audit.sh overhead -segments 32
#
# Builds lifeboat from this tree and, for the overhead, the same tree with
# the audit hook switched off, then runs bench/cmd/lbaudit. As root the overhead runs as
# BENCH_USER (default lifeboat-test), since PostgreSQL will not run as root.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
work=${BENCH_DIR:-$(mktemp -d /tmp/lbaudit.XXXXXX)}
chmod 755 "$work"
go build -o "$work/lifeboat" ./cmd/lifeboat
go build -o "$work/lbaudit" ./bench/cmd/lbaudit

# The baseline is this very tree with the hook switched off (the two
# functions every event passes through return at once), so the two sides
# differ by the audit trail alone. BASELINE_REF=<commit> compares with a
# commit instead.
mkdir -p "$work/baseline-src"
if [[ -n ${BASELINE_REF:-} ]]; then
	git archive "$BASELINE_REF" | tar -x -C "$work/baseline-src"
else
	tar -c --exclude=.git . | tar -x -C "$work/baseline-src"
	sed -i 's/^func (s \*Service) recordEvents(ctx context.Context, events \.\.\.\*audit.Event) {$/&\n\treturn/' "$work/baseline-src/internal/app/audit.go"
	sed -i 's/^func AuditWALPush(.*) {$/&\n\treturn/' "$work/baseline-src/internal/app/audit_read.go"
	grep -c '^	return$' "$work/baseline-src/internal/app/audit.go" "$work/baseline-src/internal/app/audit_read.go" >/dev/null
fi
(cd "$work/baseline-src" && go build -o "$work/lifeboat-baseline" ./cmd/lifeboat)

as_user=()
if [[ $(id -u) -eq 0 ]]; then
	as_user=(runuser -u "${BENCH_USER:-lifeboat-test}" --)
	chown "${BENCH_USER:-lifeboat-test}" "$work" # the overhead's TMPDIR
fi
mode=${1:-all}
[[ $# -gt 0 ]] && shift
if [[ $mode == verify || $mode == all ]]; then
	# As root, so that the page cache can be dropped before each run (no
	# PostgreSQL in this part).
	"$work/lbaudit" verify -lifeboat "$work/lifeboat" "$@"
fi
if [[ $mode == overhead || $mode == all ]]; then
	"${as_user[@]}" env TMPDIR="$work" "$work/lbaudit" overhead -lifeboat "$work/lifeboat" -baseline "$work/lifeboat-baseline" "$@"
fi
