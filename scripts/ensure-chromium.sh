#!/usr/bin/env bash
# Makes sure headless Chromium is available for the playground's browser test
# (internal/playground TestBrowserApproveFlow). Installs Debian's `chromium` package with apt-get when no
# Chromium is on PATH. Must run as root to install; prints the browser's version when done.
set -euo pipefail

find_chromium() {
  if [[ -n "${JITBOT_CHROMIUM:-}" && -x "${JITBOT_CHROMIUM}" ]]; then echo "$JITBOT_CHROMIUM"; return 0; fi
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

if bin=$(find_chromium); then
  echo "ensure-chromium: found $bin ($("$bin" --version 2>/dev/null | tail -n1))"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "ensure-chromium: Chromium is missing and installing it needs root: sudo $0 (or apt-get install chromium)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: Chromium is missing and there is no apt-get here; install Chromium or set JITBOT_SKIP_BROWSER=1" >&2
  exit 1
fi

echo "ensure-chromium: installing Debian's chromium package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
bin=$(find_chromium) || { echo "ensure-chromium: apt-get finished but no chromium is on PATH" >&2; exit 1; }
echo "ensure-chromium: installed $bin ($("$bin" --version 2>/dev/null | tail -n1))"
