#!/usr/bin/env bash
# bench.sh runs GEF's benchmark suite on the real stack: it installs and
# starts PostgreSQL and MinIO if they are missing, then runs ./bench, which
# prints a table and writes bench-results.json. Arguments go to the suite:
#
#   bash scripts/bench.sh                 # the whole suite, 10 to 15 minutes
#   bash scripts/bench.sh -short          # a small run that checks it works
#   bash scripts/bench.sh -only drain     # one figure
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(bash scripts/testenv.sh start)"
exec go run ./bench "$@"
