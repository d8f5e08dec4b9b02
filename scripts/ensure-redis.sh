#!/usr/bin/env bash
# Makes sure the tests have a Redis: one answering at $JITBOT_TEST_REDIS_URL (or 127.0.0.1:6379), else a
# redis-server binary the tests start themselves (store/redistest), installing it with apt-get when missing.
set -euo pipefail

answers() {
  command -v redis-cli >/dev/null 2>&1 || return 1
  if [ -n "${JITBOT_TEST_REDIS_URL:-}" ]; then
    redis-cli -u "$JITBOT_TEST_REDIS_URL" ping 2>/dev/null | grep -q PONG
  else
    redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG
  fi
}

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: installing redis-server with apt-get" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  elif ! answers; then
    echo "ensure-redis: no Redis answers and redis-server is not installed; install it (e.g. apt-get install redis-server)" >&2
    exit 1
  fi
fi

if ! answers && [ -z "${JITBOT_TEST_REDIS_URL:-}" ]; then
  echo "ensure-redis: starting redis-server on 127.0.0.1:6379" >&2
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null
  for _ in $(seq 1 50); do answers && break; sleep 0.1; done
  answers || { echo "ensure-redis: redis-server did not start" >&2; exit 1; }
fi
