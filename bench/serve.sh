# Sourced by the bench scripts that drive a live server: `serve_kiln KILN DATA_DIR` starts
# `KILN serve` on a free-by-chance loopback port with DATA_DIR (log filter from $KILN_LOG,
# default warn), waits until it answers /readyz, and sets $pid and $base. Set the EXIT trap
# that kills $pid before calling it, so a server that never gets ready is stopped too.
serve_kiln() {
    local port=$((20000 + RANDOM % 20000))
    KILN_DATA_DIR=$2 KILN_BIND=127.0.0.1:$port KILN_LOG=${KILN_LOG:-warn} "$1" serve &
    pid=$!
    base=http://127.0.0.1:$port
    until curl -sf "$base/readyz" >/dev/null; do sleep 0.2; done
}
