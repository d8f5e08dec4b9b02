#!/usr/bin/env bash
# Lints the GitHub Actions workflows (the release workflow and the pipelines example) with actionlint, built from the Go module proxy (no binary download).
set -euo pipefail
cd "$(dirname "$0")/.."
go run github.com/rhysd/actionlint/cmd/actionlint@v1.7.12 -no-color -oneline .github/workflows/*.yml examples/pipelines/github-actions.yml
