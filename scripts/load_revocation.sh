#!/usr/bin/env bash
# End to end: the quickstart's GET /protected (HS256 bearer) with shared revocations on
# one Redis (the mirror answers checks) against the in-memory store, under wrk on
# loopback in alternating rounds; prints requests/s, p99 and the ratio.
#
#   scripts/load_revocation.sh [rounds=5] [seconds=5]
#
# Both quickstart servers are pinned to CPU 0, wrk and redis-server to CPU 1 when
# `taskset` exists. Every run is bounded by wrk's duration; everything is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/wrk.sh
rounds=${1:-5}
secs=${2:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
server=(); side=()
command -v taskset >/dev/null && { server=(taskset -c 0); side=(taskset -c 1); }

# Extra cargo arguments (e.g. `LOAD_CARGO_ARGS=--all-features` to reuse a build).
# shellcheck disable=SC2086
cargo build --release --features axum,metrics,redis --example quickstart -q ${LOAD_CARGO_ARGS:-}
bin=${CARGO_TARGET_DIR:-target}/release/examples/quickstart
out=$(mktemp -d)
redis_port=$(free_port); memory_port=$(free_port); shared_port=$(free_port)
(exec "${side[@]}" redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$out/redis.log" 2>&1) &
redis_pid=$!
trap 'kill $redis_pid ${memory_pid:-} ${shared_pid:-} 2>/dev/null || true; rm -rf "$out"' EXIT
wait_for "$out/redis.log" "Ready to accept"
(PORT=$memory_port exec "${server[@]}" "$bin" >"$out/memory.log" 2>&1) &
memory_pid=$!
(PORT=$shared_port REDIS_URL="redis://127.0.0.1:$redis_port" exec "${server[@]}" "$bin" >"$out/shared.log" 2>&1) &
shared_pid=$!
wait_for "$out/memory.log" listening
wait_for "$out/shared.log" listening
grep -q "revocation store: Redis" "$out/shared.log"

login() { curl -sf -X POST "http://127.0.0.1:$1/login" -H 'content-type: application/json' \
  -d '{"username":"test","password":"test"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
memory_header="Authorization: Bearer $(login "$memory_port")"
shared_header="Authorization: Bearer $(login "$shared_port")"
for p in "$memory_port" "$shared_port"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/protected")" = 401 ]
done

alternate in_memory "http://127.0.0.1:$memory_port/protected" "$memory_header" \
  redis_mirror "http://127.0.0.1:$shared_port/protected" "$shared_header"
