#!/usr/bin/env bash
# End to end: an axum hello world with and without AuthLayer (HS256 bearer) under wrk
# on loopback, in alternating rounds; prints requests/s and p99 of both and the ratio.
#
#   scripts/load.sh [rounds=5] [seconds=5]
#
# The server is pinned to CPU 0 and wrk to CPU 1 when `taskset` exists. Every run is
# bounded by wrk's duration; both servers are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
secs=${2:-5}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }
taskset_server=()
command -v taskset >/dev/null && taskset_server=(taskset -c 0)

# Extra cargo arguments (e.g. `LOAD_CARGO_ARGS=--all-features` to reuse a build).
# shellcheck disable=SC2086
cargo build --release --example hello -q ${LOAD_CARGO_ARGS:-}
bin=${CARGO_TARGET_DIR:-target}/release/examples/hello
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
plain_port=$(free_port); auth_port=$(free_port)
out=$(mktemp -d)
# `exec` in the subshell, so that $! is the server itself.
(PORT=$plain_port exec "${taskset_server[@]}" "$bin" >"$out/plain.log" 2>&1) &
plain_pid=$!
(AUTH=1 PORT=$auth_port exec "${taskset_server[@]}" "$bin" >"$out/auth.log" 2>&1) &
auth_pid=$!
trap 'kill $plain_pid $auth_pid 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 50); do
  grep -q listening "$out/plain.log" 2>/dev/null && grep -q listening "$out/auth.log" 2>/dev/null && break
  sleep 0.1
done
token=$(sed -n 's/^token: //p' "$out/auth.log")
header="Authorization: Bearer $token"
# The layer must really be on: without the token the auth server answers 401.
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth_port/")" = 401 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "$header" "http://127.0.0.1:$auth_port/")" = 200 ]

run() { # port -> "rps p99_ms"
  pin 1 wrk -t1 -c32 -d"${secs}s" --latency -H "$header" "http://127.0.0.1:$1/" >"$out/wrk.txt"
  if grep -q "Non-2xx" "$out/wrk.txt"; then echo "non-2xx answers under load" >&2; exit 1; fi
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out/wrk.txt")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$out/wrk.txt")
  echo "$rps $p99"
}

printf '%-6s %14s %10s %14s %10s %8s\n' round plain_rps plain_p99 auth_rps auth_p99 ratio
: >"$out/ratios"
for r in $(seq "$rounds"); do
  if (( r % 2 )); then p=$(run "$plain_port"); a=$(run "$auth_port"); else a=$(run "$auth_port"); p=$(run "$plain_port"); fi
  read -r prps pp99 <<<"$p"; read -r arps ap99 <<<"$a"
  ratio=$(awk -v a="$arps" -v p="$prps" 'BEGIN {printf "%.3f", a/p}')
  echo "$ratio" >>"$out/ratios"
  echo "$prps $pp99 $arps $ap99" >>"$out/rounds"
  printf '%-6s %14s %8sms %14s %8sms %8s\n' "$r" "$prps" "$pp99" "$arps" "$ap99" "$ratio"
done
med() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "median without the layer: $(cut -d' ' -f1 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f2 "$out/rounds" | med) ms"
echo "median with the layer:    $(cut -d' ' -f3 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f4 "$out/rounds" | med) ms"
echo "median requests/s ratio (with layer / without): $(med <"$out/ratios")"
