#!/usr/bin/env bash
# The fidelity benchmark of the RNN language models (not part of the test suite): trains the
# given job files on The Time Machine through a real kiln server and prints, for each, the final
# perplexity, the wall time, tokens per second and a greedy continuation of "time traveller".
#
#   bench/time-machine.sh [KILN_BINARY] [JOB.json ...]
#
# Defaults: the test-built binary and examples/rnn-time-machine.json. The corpus is the one built
# into kiln (data/timemachine.txt in this repository, checked by its SHA-1).
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
shift || true
jobs=("$@")
[ ${#jobs[@]} -gt 0 ] || jobs=(examples/rnn-time-machine.json)

data=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$data"' EXIT
source bench/serve.sh
serve_kiln "$kiln" "$data"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
for job in "${jobs[@]}"; do
  start=$(date +%s.%N)
  id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d @"$job" | json 'd["id"]')
  while :; do
    status=$(curl -sf "$base/jobs/$id" | json 'd["status"]')
    case $status in succeeded|failed|cancelled) break ;; esac
    sleep 2
  done
  end=$(date +%s.%N)
  echo "== $job: $status in $(python3 -c "print(round($end - $start, 1))") s"
  curl -sf "$base/jobs/$id/metrics" | json '"\n".join("epoch %d perplexity %.3f%s tokens/s %.0f grad_norm %.2f (max %.2f)" % (e["epoch"], e["perplexity"], (" validation %.3f" % e["validation_perplexity"]) if e.get("validation_perplexity") else "", e["tokens_per_sec"], e["grad_norm"], e["grad_norm_max"]) for e in d["epochs"] if e["epoch"] % 50 == 0 or e["epoch"] in (1, 10))'
  curl -sf "$base/jobs/$id" | json '"parameters %d, error %s" % (d["parameters"], d["error"])'
  curl -sf -XPOST "$base/jobs/$id/generate" -H 'content-type: application/json' \
    -d '{"prefix": "time traveller ", "max_tokens": 50}' | json '"greedy: %r + %r" % (d["prompt"], d["text"])'
done
