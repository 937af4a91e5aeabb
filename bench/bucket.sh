#!/usr/bin/env bash
# Benchmarks incremental backups of a bucket asset against MinIO (see
# docs/bucket.md#benchmark): a prefix of 10,000 objects, 2 GiB, backed up,
# 1 % of the objects rewritten, backed up again. Fails unless the second
# backup downloads only the changed objects and stores at most 2 % of the
# first snapshot's bytes.
#
#   bench/bucket.sh                                  # full size
#   bench/bucket.sh -objects 1000 -size 100MiB       # a quick run
#   bench/bucket.sh -restore -json /tmp/bucket.json  # also time a restore
#
# Needs MinIO (scripts/install-minio.sh; -minio names another binary).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
if [[ ! -x /usr/local/lib/lifeboat/minio ]] && [[ " $* " != *" -minio"* ]]; then
	bash scripts/install-minio.sh
fi
exec go run ./bench/cmd/lbbucket "$@"
