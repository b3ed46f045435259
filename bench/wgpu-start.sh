#!/usr/bin/env bash
# Cold and warm start of WGPU jobs (not part of the test suite): runs each job file on `wgpu`
# through a fresh kiln server and data dir, stops the server, starts a new one on the same data
# dir and runs the files again, then prints each job's `first_step_seconds` (start of the run to
# the end of its first optimizer step: data, model, and on a GPU compiling and autotuning the
# kernels) and its throughput. The second start finds CubeCL's autotune store and the driver's
# shader cache under <data-dir>/gpu-cache.
#
# Then, from the server's debug log (bench/step_times.py), the steady state of epochs 1-2 of each
# run: the median training step, the slowest step after the first (and how many times the median
# it took), and the slowest evaluation batch: a shape met for the first time mid-epoch (the last,
# smaller batch; evaluation) shows as many times the median. Each job runs with
# `training.log_every` 1, so every step's time is its own device work, not a share of ten.
#
#   bench/wgpu-start.sh [KILN_BINARY] [JOB.json ...]
#
# Defaults: the test-built binary and examples/lenet-bn-synthetic.json. Each job's `backend` is
# replaced by $BACKEND (default `wgpu`).
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
shift || true
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(examples/lenet-bn-synthetic.json)
backend=${BACKEND:-wgpu}

data=$(mktemp -d)
logs=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data" "$logs"' EXIT
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

for start in cold warm; do
  port=$((20000 + RANDOM % 20000))
  KILN_DATA_DIR=$data KILN_BIND=127.0.0.1:$port KILN_LOG=warn,kiln::train=debug "$kiln" serve >"$logs/$start" &
  pid=$!
  base=http://127.0.0.1:$port
  until curl -sf "$base/readyz" >/dev/null; do sleep 0.2; done
  [ $start = cold ] && curl -sf "$base/backends" | json '"devices: " + "; ".join("%s %s (%s, %s)" % (g["id"], g["name"], g["type"], g["api"]) for b in d["backends"] for g in b["devices"])'
  for job in "${jobs[@]}"; do
    body=$(python3 -c "import json,sys; d=json.load(open('$job')); d['backend']='$backend'; d.setdefault('training', {})['log_every']=1; print(json.dumps(d))")
    from=$(wc -c <"$logs/$start")
    id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d "$body" | json 'd["id"]')
    while :; do
      status=$(curl -sf "$base/jobs/$id" | json 'd["status"]')
      case $status in succeeded|failed|cancelled) break ;; esac
      sleep 1
    done
    line=$(curl -sf "$base/jobs/$id" | json '"%s on %s: %s, first step after %.1f s" % (d["spec"]["model"]["kind"], d["backend"], d["status"], d["first_step_seconds"] or -1)')
    rate=$(curl -sf "$base/jobs/$id/metrics" | json '", ".join("epoch %d %.0f %s/s" % (e["epoch"], e.get("examples_per_sec") or e.get("tokens_per_sec"), "examples" if "examples_per_sec" in e else "tokens") for e in d["epochs"])')
    echo "$start: $job: $line; $rate"
    tail -c +"$((from + 1))" "$logs/$start" | python3 bench/step_times.py "$start: $job:"
  done
  kill -TERM $pid
  wait $pid || true
  pid=
done
du -sh "$data/gpu-cache"/* 2>/dev/null | sed 's/^/gpu cache: /'
