#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ one after the other, each for a bounded time,
# and fails on the first crash (the input is kept in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [seconds per target=20] [target...]
#
# Needs nightly (`cargo +nightly`) and cargo-fuzz (installed here when missing). Builds
# without a sanitizer (`-s none`, see fuzz/README.md) into fuzz/target, one job at a
# time, and fuzzes at low priority; new inputs go to fuzz/corpus/<target> (not
# committed), the committed seeds in fuzz/seeds/<target> are read too.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(verify claims headers service session)

# The fuzz crate has its own target dir; a shared CARGO_TARGET_DIR would mix its
# instrumented builds with the crate's.
unset CARGO_TARGET_DIR
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

start=$(date +%s)
cargo +nightly fuzz build -s none
echo "fuzz build: $(($(date +%s) - start)) s"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  # libFuzzer's own bounds: total time, per-input time, memory.
  if ! nice -n 15 cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz target $t FAILED; the input is in fuzz/artifacts/$t/" >&2
    rm -f "$log"
    exit 1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  echo "fuzz $t: ${execs:-?} executions in ${secs} s (${rate:-?}/s), no crash"
  rm -f "$log"
done
echo "fuzzing: $(($(date +%s) - start)) s in all"
