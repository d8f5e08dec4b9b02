#!/usr/bin/env bash
# The one test command (README, `make test` and CI all run this): a real Redis and headless Chromium (both
# installed with apt-get when missing and run as root), then every test with -race.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-redis.sh
if [ "${JITBOT_SKIP_BROWSER:-}" != 1 ]; then
  scripts/ensure-chromium.sh
fi
go vet ./...
go test -race -count=1 -timeout 20m ./...
