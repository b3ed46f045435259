#!/usr/bin/env bash
# The book's ResNet-18 and DenseNet on Fashion-MNIST, kiln against PyTorch on the CPU (issue 27):
# the same net, initialisation (Xavier-uniform weights), data, batch, learning rate and epochs,
# each trained once. kiln trains through a real server (a job POSTed as a user would); PyTorch
# runs bench/book_accuracy.py. One table prints train loss, train accuracy and test accuracy at
# every epoch, side by side. Not part of the test suite: on two cores it takes about an hour.
#
#   bench/book-accuracy.sh KILN_BINARY PYTHON [EPOCHS] [MODEL...]
#     PYTHON  a Python with torch (a venv outside the repository)
#     MODEL   resnet (28x28, lr 0.05) and/or densenet (resize 32, lr 0.1); default both
#
# Needs Debian's dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
kiln=$1 python=$2 epochs=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
models=("$@")
[[ ${#models[@]} -gt 0 ]] || models=(resnet densenet)

data=$(mktemp -d)
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && { kill $pid 2>/dev/null; wait $pid 2>/dev/null; }; rm -rf "$data" "$out"' EXIT
source bench/serve.sh
serve_kiln "$kiln" "$data"

# The book's settings per model: learning rate and resize (0: the data's own 28x28).
settings() { case $1 in resnet) echo "0.05 0" ;; densenet) echo "0.1 32" ;; *) echo "unknown model $1" >&2; exit 2 ;; esac; }

kiln_run() {
    local model=$1 lr=$2 resize=$3 data_spec id status
    data_spec='{"dataset": "fashion_mnist"}'
    [[ $resize == 0 ]] || data_spec="{\"dataset\": \"fashion_mnist\", \"resize\": $resize}"
    id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d "{
        \"model\": {\"kind\": \"$model\"}, \"data\": $data_spec,
        \"training\": {\"epochs\": $epochs, \"batch_size\": 256, \"seed\": 42, \"optimizer\": {\"kind\": \"sgd\", \"lr\": $lr}},
        \"backend\": \"cpu\"}" | jq -r .id)
    while :; do
        status=$(curl -sf "$base/jobs/$id" | jq -r .status)
        case $status in succeeded|failed|cancelled) break ;; esac
        sleep 5
    done
    [[ $status == succeeded ]] || { echo "kiln's $model job $status: $(curl -sf "$base/jobs/$id" | jq -r .error)" >&2; exit 1; }
    curl -sf "$base/jobs/$id/metrics" |
        jq -r '.epochs[] | "\(.epoch) \(.train_loss) \(.train_accuracy) \(.test_accuracy) \(.seconds)"'
}

torch_run() {
    "$python" bench/book_accuracy.py "$1" "$epochs" 256 "$2" "$3" |
        sed -nE 's/^epoch=([0-9]+) train_loss=(\S+) train_acc=(\S+) test_acc=(\S+) seconds=(\S+)/\1 \2 \3 \4 \5/p'
}

for model in "${models[@]}"; do
    read -r lr resize <<<"$(settings "$model")"
    kiln_run "$model" "$lr" "$resize" >"$out/$model.kiln"
    torch_run "$model" "$lr" "$resize" >"$out/$model.torch"
done

printf '| model | epoch | train loss kiln / PyTorch | train acc kiln / PyTorch | test acc kiln / PyTorch | seconds kiln / PyTorch |\n'
printf '|---|---|---|---|---|---|\n'
for model in "${models[@]}"; do
    join "$out/$model.kiln" "$out/$model.torch" | while read -r epoch kl ka kt ks tl ta tt ts; do
        printf '| %s | %s | %.3f / %.3f | %.3f / %.3f | %.3f / %.3f | %.0f / %.0f |\n' \
            "$model" "$epoch" "$kl" "$tl" "$ka" "$ta" "$kt" "$tt" "$ks" "$ts"
    done
done
