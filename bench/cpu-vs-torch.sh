#!/usr/bin/env bash
# kiln against PyTorch on this machine's CPU, side by side: for each workload, `kiln bench` and
# the PyTorch reference script (same model, batch and loop) run alternately, ROUNDS times each,
# and one table prints every throughput and the ratio of the medians.
#
# usage: bench/cpu-vs-torch.sh KILN_BINARY PYTHON TORCH_REF [ROUNDS] [WORKLOAD...]
#   KILN_BINARY  e.g. target/release/kiln
#   PYTHON       a Python with torch installed (a venv outside the repository)
#   TORCH_REF    the reference script (torch_ref.py, see docs/benchmarks.md)
#   ROUNDS       alternations, default 2
#   WORKLOAD     model:batch:steps, default: lenet_bn:256:20 resnet18:16:3 rnn:32:20 gru:32:20 lstm:32:20
#
# Run it on a quiet machine: PyTorch's throughput collapses when anything else runs beside it.
set -euo pipefail

if [[ $# -lt 3 ]]; then
    sed -n '2,12p' "$0" >&2
    exit 2
fi
kiln=$1 python=$2 torch_ref=$3 rounds=${4:-2}
shift $(( $# < 4 ? $# : 4 ))
workloads=("$@")
if [[ ${#workloads[@]} -eq 0 ]]; then
    workloads=(lenet_bn:256:20 resnet18:16:3 rnn:32:20 gru:32:20 lstm:32:20)
fi

# The throughput a run printed (examples_per_sec= or tokens_per_sec=).
rate() { grep -oE '(examples|tokens)_per_sec=[0-9.]+' | tail -1 | cut -d= -f2; }
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

printf '| workload | PyTorch | kiln | ratio (medians) |\n|---|---|---|---|\n'
for workload in "${workloads[@]}"; do
    IFS=: read -r model batch steps <<<"$workload"
    torch_rates=() kiln_rates=()
    for _ in $(seq "$rounds"); do
        torch_rates+=("$("$python" "$torch_ref" "$model" "$steps" "$batch" cpu | rate)")
        kiln_rates+=("$("$kiln" bench --model "$model" --batch "$batch" --steps "$steps" 2>/dev/null | rate)")
    done
    torch_median=$(printf '%s\n' "${torch_rates[@]}" | median)
    kiln_median=$(printf '%s\n' "${kiln_rates[@]}" | median)
    ratio=$(awk -v k="$kiln_median" -v t="$torch_median" 'BEGIN { printf "%.2f", k / t }')
    printf '| %s, batch %s | %s | %s | %s× |\n' "$model" "$batch" \
        "$(printf '%.0f ' "${torch_rates[@]}" | sed 's/ $//; s/ / \/ /g')" \
        "$(printf '%.0f ' "${kiln_rates[@]}" | sed 's/ $//; s/ / \/ /g')" "$ratio"
done
