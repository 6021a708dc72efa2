#!/usr/bin/env bash
# Runs every test that starts Redis servers (one node, the strict store, a 3+3
# cluster, metrics) against Valkey instead, `runs` times.
#
#   scripts/valkey.sh [runs=1]
#
# Uses `valkey-server`/`valkey-cli` from PATH when present (Debian 13 packages them);
# otherwise downloads Debian 12's bookworm-backports packages and unpacks them into
# $VALKEY_DIR (default: a directory under $TMPDIR), installing nothing system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-1}

if command -v valkey-server >/dev/null && command -v valkey-cli >/dev/null; then
    server=$(command -v valkey-server)
    cli=$(command -v valkey-cli)
else
    dir=${VALKEY_DIR:-${TMPDIR:-/tmp}/tower-jwt-auth-valkey}
    server=$dir/usr/bin/valkey-server
    cli=$dir/usr/bin/valkey-cli
    if [ ! -x "$server" ] || [ ! -x "$cli" ]; then
        apt_dir=$(mktemp -d)
        trap 'rm -rf "$apt_dir"' EXIT
        chmod 755 "$apt_dir" # apt downloads as its own user
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
        echo "deb http://deb.debian.org/debian bookworm-backports main" >"$apt_dir/sources.list"
        apt=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
        apt-get "${apt[@]}" update -qq
        (cd "$apt_dir" && apt-get "${apt[@]}" download -qq valkey-server valkey-tools)
        mkdir -p "$dir"
        for deb in "$apt_dir"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
    fi
fi

# REQUIRE_REDIS=1 below: a server that cannot be found fails the tests instead of
# skipping them. And make sure this one is Valkey.
"$server" --version | grep -q '^Valkey' || { echo "$server is not Valkey" >&2; exit 1; }
echo "testing against $("$server" --version)"

failed=0
for i in $(seq "$runs"); do
    if REQUIRE_REDIS=1 REDIS_SERVER=$server REDIS_CLI=$cli \
        cargo test -q --all-features --test revocation --test cluster_harness --test metrics; then
        echo "run $i of $runs: passed"
    else
        echo "run $i of $runs: FAILED"
        failed=$((failed + 1))
    fi
done
echo "$((runs - failed)) of $runs runs passed"
[ "$failed" -eq 0 ]
