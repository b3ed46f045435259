#!/usr/bin/env bash
# The API's load on each database layout, alternately ROUNDS times: one kiln on SQLite, one on a
# throwaway PostgreSQL (scripts/postgres), and three replicas on one PostgreSQL and one shared dir,
# each under bench/store_load.py while a job trains: submits accepted per second and
# GET /jobs/{id}/metrics p50/p99 (spread over the replicas). With three replicas it then kills -9
# the one training that job and times how long until it trains again on another (--lease-secs 5).
# One table.
#
# usage: bench/store.sh KILN_BINARY [ROUNDS] [SUBMITS] [METRICS_REQUESTS] [THREADS]
#   KILN_BINARY  e.g. target/release/kiln
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 1 ]]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
kiln=$(realpath "$1") rounds=${2:-2} submits=${3:-200} requests=${4:-1000} threads=${5:-4}
lease=5

work=$(mktemp -d) pg=$(mktemp -d)
servers=()
stop() {
    for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
    servers=()
}
trap 'stop; scripts/postgres stop "$pg" >/dev/null 2>&1 || true; rm -rf "$work" "$pg"' EXIT
postgres=$(scripts/postgres start "$pg")

# Starts a kiln on database $1 (empty: SQLite) with shared dir $2 (empty: none) in a fresh data
# dir; appends its pid to $servers and its URL to $bases.
start() {
    local data port
    data=$(mktemp -d -p "$work")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local options=(--bind "127.0.0.1:$port" --data-dir "$data" --queue-capacity 100000 --max-keep-last 1000
        --lease-secs "$lease" --wgpu false)
    [ -z "$1" ] || options+=(--database-url "$1")
    [ -z "$2" ] || options+=(--shared-dir "$2")
    "$kiln" serve "${options[@]}" >"$data.log" 2>&1 &
    servers+=($!)
    local base="http://127.0.0.1:$port"
    for _ in $(seq 300); do
        if curl -fs "$base/readyz" >/dev/null; then
            bases="${bases:+$bases,}$base"
            return
        fi
        sleep 0.1
    done
    cat "$data.log" >&2
    exit 1
}

# Kills -9 the replica (of $bases, pids $servers) that trains job $1; prints failover_s=.
failover() {
    local replica address pid i=0 url killed
    IFS=, read -r -a urls <<<"$bases"
    replica=$(curl -fs "${urls[0]}/jobs/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["replica"])')
    address=$(curl -fs "${urls[0]}/cluster" | python3 -c "import json,sys; print([r['address'] for r in json.load(sys.stdin)['replicas'] if r['id'] == '$replica'][0])")
    for url in "${urls[@]}"; do
        [ "$url" = "$address" ] && pid=${servers[$i]}
        i=$((i + 1))
    done
    kill -9 "$pid"
    killed=$(date +%s.%N)
    for url in "${urls[@]}"; do [ "$url" != "$address" ] && break; done
    python3 bench/store_load.py --resumed "$url" "$1" "$replica" "$killed"
}

results=()
for round in $(seq "$rounds"); do
    for layout in SQLite PostgreSQL "PostgreSQL x3"; do
        bases=""
        case "$layout" in
            SQLite) start "" "" ;;
            PostgreSQL | "PostgreSQL x3")
                database="kiln_bench_${round}_$((${#results[@]}))"
                psql -q "$postgres/postgres" -c "CREATE DATABASE $database" >/dev/null
                shared=$(mktemp -d -p "$work")
                replicas=$([ "$layout" = PostgreSQL ] && echo 1 || echo 3)
                for _ in $(seq "$replicas"); do start "$postgres/$database" "$shared"; done
                ;;
        esac
        line=$(python3 bench/store_load.py "$bases" "$submits" "$requests" "$threads")
        if [ "$layout" = "PostgreSQL x3" ]; then
            line="$line $(failover "$(grep -oE 'trained=[^ ]+' <<<"$line" | cut -d= -f2)")"
        fi
        stop
        results+=("$layout|$round|$line")
    done
done

value() { grep -oE "$1=[0-9.]+" | cut -d= -f2 || echo -; }
printf '| database | round | submits/s | metrics p50 ms | metrics p99 ms | kill -9 to training again, s |\n'
printf '|---|---|---|---|---|---|\n'
for r in "${results[@]}"; do
    IFS='|' read -r layout round line <<<"$r"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$layout" "$round" "$(value submits_per_sec <<<"$line")" \
        "$(value metrics_p50_ms <<<"$line")" "$(value metrics_p99_ms <<<"$line")" "$(value failover_s <<<"$line")"
done
