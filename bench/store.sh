#!/usr/bin/env bash
# The API's load on each database: one kiln server on SQLite, then one on a throwaway PostgreSQL
# (scripts/postgres), alternately ROUNDS times, each under bench/store_load.py while a job trains
# beside it: submits accepted per second and GET /jobs/{id}/metrics p50/p99. One table.
#
# usage: bench/store.sh KILN_BINARY [ROUNDS] [SUBMITS] [METRICS_REQUESTS] [THREADS]
#   KILN_BINARY  e.g. target/release/kiln
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 ]]; then
    sed -n '2,7p' "$0" >&2
    exit 2
fi
kiln=$(realpath "$1") rounds=${2:-2} submits=${3:-200} requests=${4:-1000} threads=${5:-4}

work=$(mktemp -d) pg=$(mktemp -d)
server=""
trap '[ -z "$server" ] || kill "$server" 2>/dev/null || true; scripts/postgres stop "$pg" >/dev/null 2>&1 || true; rm -rf "$work" "$pg"' EXIT
postgres=$(scripts/postgres start "$pg")

# Starts kiln on database $1 (empty: SQLite) in a fresh data dir; sets $server and $base.
start() {
    local data port
    data=$(mktemp -d -p "$work")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local database=()
    [ -z "$1" ] || database=(--database-url "$1")
    "$kiln" serve "${database[@]}" --bind "127.0.0.1:$port" --data-dir "$data" --queue-capacity 100000 \
        --max-keep-last 1000 >"$data.log" 2>&1 &
    server=$!
    base="http://127.0.0.1:$port"
    for _ in $(seq 300); do curl -fs "$base/readyz" >/dev/null && return; sleep 0.1; done
    cat "$data.log" >&2
    exit 1
}
stop() { kill "$server"; wait "$server" || true; server=""; }

results=()
for round in $(seq "$rounds"); do
    for database in "" "$postgres/kiln_bench_$round"; do
        if [ -n "$database" ]; then
            psql -q "$postgres/postgres" -c "CREATE DATABASE kiln_bench_$round" >/dev/null
        fi
        start "$database"
        line=$(python3 bench/store_load.py "$base" "$submits" "$requests" "$threads")
        stop
        name=$([ -z "$database" ] && echo SQLite || echo PostgreSQL)
        results+=("$name $line")
    done
done

value() { grep -oE "$1=[0-9.]+" | cut -d= -f2; }
printf '| database | round | submits/s | metrics p50 ms | metrics p99 ms |\n|---|---|---|---|---|\n'
i=0
for r in "${results[@]}"; do
    printf '| %s | %d | %s | %s | %s |\n' "${r%% *}" $((i / 2 + 1)) "$(value submits_per_sec <<<"$r")" \
        "$(value metrics_p50_ms <<<"$r")" "$(value metrics_p99_ms <<<"$r")"
    i=$((i + 1))
done
