# Shared by the load scripts: free ports, a bounded wrk run, medians.
# shellcheck shell=bash

pin() { if command -v taskset >/dev/null; then taskset -c "$1" "${@:2}"; else "${@:2}"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_for FILE PATTERN: until FILE contains PATTERN (at most 10 s).
wait_for() {
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; return 1
}

# wrk_run URL HEADER -> "rps p99_ms" (wrk on CPU 1, 32 connections, $secs seconds).
wrk_run() {
  pin 1 wrk -t1 -c32 -d"${secs}s" --latency -H "$2" "$1" >"$out/wrk.txt"
  if grep -q "Non-2xx" "$out/wrk.txt"; then echo "non-2xx answers under load" >&2; exit 1; fi
  local rps p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$out/wrk.txt")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' "$out/wrk.txt")
  echo "$rps $p99"
}

med() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

# alternate NAME_A URL_A HEADER_A NAME_B URL_B HEADER_B: $rounds alternating rounds of
# wrk_run against A and B (A first in odd rounds), a line per round, then the medians
# and the median of the per-round ratios B/A.
alternate() {
  printf '%-6s %14s %10s %14s %10s %8s\n' round "$1_rps" "$1_p99" "$4_rps" "$4_p99" ratio
  : >"$out/ratios"; : >"$out/rounds"
  local r a b arps ap99 brps bp99 ratio
  for r in $(seq "$rounds"); do
    if (( r % 2 )); then a=$(wrk_run "$2" "$3"); b=$(wrk_run "$5" "$6")
    else b=$(wrk_run "$5" "$6"); a=$(wrk_run "$2" "$3"); fi
    read -r arps ap99 <<<"$a"; read -r brps bp99 <<<"$b"
    ratio=$(awk -v b="$brps" -v a="$arps" 'BEGIN {printf "%.3f", b/a}')
    echo "$ratio" >>"$out/ratios"
    echo "$arps $ap99 $brps $bp99" >>"$out/rounds"
    printf '%-6s %14s %8sms %14s %8sms %8s\n' "$r" "$arps" "$ap99" "$brps" "$bp99" "$ratio"
  done
  echo "median $1: $(cut -d' ' -f1 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f2 "$out/rounds" | med) ms"
  echo "median $4: $(cut -d' ' -f3 "$out/rounds" | med) requests/s, p99 $(cut -d' ' -f4 "$out/rounds" | med) ms"
  echo "median requests/s ratio ($4 / $1): $(med <"$out/ratios")"
}
