#!/usr/bin/env bash
# Fashion-MNIST brought in as a user brings their own images (not part of the test suite):
# Debian's four IDX files in a tar, and the same images as class folders of PNGs
# (scripts/fashion-mnist-folders), each uploaded with POST /datasets?kind=images to a real kiln
# server, then the same LeNet-BN job trained on the built-in fashion_mnist and on both uploads.
# Prints how long each upload took, what was stored, and each job's step losses and test
# accuracy. The IDX upload holds the same pixels in the same order as the built-in set, so its
# losses must be the built-in job's; the class folders hold them in another order (by class).
#
#   bench/uploaded-fashion-mnist.sh [KILN_BINARY] [EPOCHS]
#
# Needs Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
epochs=${2:-2}
src=/usr/share/datasets/fashion-mnist

work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
KILN_DATA_DIR=$work/data KILN_BIND=127.0.0.1:$port KILN_LOG=warn KILN_WGPU=false "$kiln" serve &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
base=http://127.0.0.1:$port
until curl -sf "$base/readyz" >/dev/null; do sleep 0.2; done
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

tar -cf "$work/idx.tar" -C "$src" train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz \
  t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz
scripts/fashion-mnist-folders --from "$src" "$work/folders.tar.gz" >/dev/null

upload() { # FILE NAME -> the data set's id; prints the upload's row
  local start end answer
  start=$(date +%s.%N)
  answer=$(curl -sf -XPOST "$base/datasets?kind=images&name=$2" -H 'content-type: application/octet-stream' \
    --data-binary @"$1")
  end=$(date +%s.%N)
  echo "$answer" | json "'| %s | %.1f MB | %.1f s | %d | %d | %d | %d | %.1f MB |' % ('$2', $(stat -c %s "$1") / 1e6, $end - $start, d['images']['train'], d['images']['test'], len(d['images']['classes']), d['images']['channels'], d['bytes'] / 1e6)" >&2
  echo "$answer" | json 'd["id"]'
}
echo "| upload | archive | time | train | test | classes | channels | stored |" >&2
echo "|---|---|---|---|---|---|---|---|" >&2
idx=$(upload "$work/idx.tar" idx)
folders=$(upload "$work/folders.tar.gz" folders)

train() { # DATA_JSON NAME
  local job id status
  job="{\"model\": {\"kind\": \"lenet_bn\"}, \"data\": $1, \"training\": {\"epochs\": $epochs, \"batch_size\": 256, \"seed\": 1, \"log_every\": 100, \"optimizer\": {\"kind\": \"sgd\", \"lr\": 0.9}}}"
  id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d "$job" | json 'd["id"]')
  while :; do
    status=$(curl -sf "$base/jobs/$id" | json 'd["status"]')
    case $status in succeeded|failed|cancelled) break ;; esac
    sleep 2
  done
  curl -sf "$base/jobs/$id/metrics?limit=1000" | json "'| $2 | $status | ' + ' | '.join('%.6f' % s['loss'] for s in d['steps'] if s['step'] in (100, 200, 400)) + ' | ' + ' | '.join('%.4f' % e['test_accuracy'] for e in d['epochs']) + ' |'"
}
echo
echo "| data | status | loss step 100 | 200 | 400 | test accuracy by epoch |"
echo "|---|---|---|---|---|---|"
train '{"dataset": "fashion_mnist"}' fashion_mnist
train "{\"dataset\": \"uploaded\", \"dataset_id\": \"$idx\"}" "uploaded IDX"
train "{\"dataset\": \"uploaded\", \"dataset_id\": \"$folders\"}" "uploaded class folders"
