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

cargo build --release --features redis --example quickstart -q
bin=target/release/examples/quickstart
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

printf '%-6s %14s %10s %14s %10s %8s\n' round memory_rps memory_p99 redis_rps redis_p99 ratio
: >"$out/ratios"
for r in $(seq "$rounds"); do
  if (( r % 2 )); then
    m=$(wrk_run "http://127.0.0.1:$memory_port/protected" "$memory_header")
    s=$(wrk_run "http://127.0.0.1:$shared_port/protected" "$shared_header")
  else
    s=$(wrk_run "http://127.0.0.1:$shared_port/protected" "$shared_header")
    m=$(wrk_run "http://127.0.0.1:$memory_port/protected" "$memory_header")
  fi
  read -r mrps mp99 <<<"$m"; read -r srps sp99 <<<"$s"
  ratio=$(awk -v s="$srps" -v m="$mrps" 'BEGIN {printf "%.3f", s/m}')
  echo "$ratio" >>"$out/ratios"
  echo "$mrps $mp99 $srps $sp99" >>"$out/rounds"
  printf '%-6s %14s %8sms %14s %8sms %8s\n' "$r" "$mrps" "$mp99" "$srps" "$sp99" "$ratio"
done
echo "median in-memory store:   $(cut -d' ' -f1 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f2 "$out/rounds" | med) ms"
echo "median Redis (mirror):    $(cut -d' ' -f3 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f4 "$out/rounds" | med) ms"
echo "median requests/s ratio (Redis / in-memory): $(med <"$out/ratios")"
