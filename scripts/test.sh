#!/usr/bin/env bash
# The one test command (README, `make test` and CI all run this): a real Redis, then every test with -race.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-redis.sh
go vet ./...
go test -race -count=1 -timeout 20m ./...
