#!/usr/bin/env bash
# End to end: an axum hello world with and without AuthLayer (HS256 bearer) under wrk
# on loopback, in alternating rounds; prints requests/s and p99 of both and the ratio.
#
#   scripts/load.sh [rounds=5] [seconds=5]
#   LOAD_CONTROL=1 scripts/load.sh …   # control: both servers without the layer, so the
#                                      # ratio shows what the method itself reports
#
# The server is pinned to CPU 0 and wrk to CPU 1 when `taskset` exists. Every run is
# bounded by wrk's duration; both servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
source scripts/lib/wrk.sh
server=()
command -v taskset >/dev/null && server=(taskset -c 0)

# Extra cargo arguments (e.g. `LOAD_CARGO_ARGS=--all-features` to reuse a build).
# shellcheck disable=SC2086
cargo build --release --example hello -q ${LOAD_CARGO_ARGS:-}
bin=${CARGO_TARGET_DIR:-target}/release/examples/hello
plain_port=$(free_port); auth_port=$(free_port)
out=$(mktemp -d)
# `exec` in the subshell, so that $! is the server itself.
(PORT=$plain_port exec "${server[@]}" "$bin" >"$out/plain.log" 2>&1) &
plain_pid=$!
auth=1
[ "${LOAD_CONTROL:-}" = 1 ] && auth=0
(AUTH=$auth PORT=$auth_port exec "${server[@]}" "$bin" >"$out/auth.log" 2>&1) &
auth_pid=$!
trap 'kill $plain_pid $auth_pid 2>/dev/null || true; rm -rf "$out"' EXIT
wait_for "$out/plain.log" listening
wait_for "$out/auth.log" listening
token=$(sed -n 's/^token: //p' "$out/auth.log")
header="Authorization: Bearer $token"
# The layer must really be on: without the token the auth server answers 401.
[ "$auth" = 0 ] || [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth_port/")" = 401 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$header" "http://127.0.0.1:$auth_port/")" = 200 ]

# The same header for both: the plain server ignores it.
second=with_layer
[ "$auth" = 0 ] && second=also_without_layer
alternate without_layer "http://127.0.0.1:$plain_port/" "$header" \
  "$second" "http://127.0.0.1:$auth_port/" "$header"
