#!/usr/bin/env bash
# kiln on a GPU against PyTorch CUDA, in one command, for a machine with an NVIDIA GPU and no
# network. It installs nothing: it unpacks the bundle that bench/gpu-bundle.sh made (kiln's release
# binaries, WGSL and SPIR-V builds; the Vulkan loader's Debian packages; Fashion-MNIST; torch_ref.py)
# into a scratch folder, runs everything from there and prints one table.
#
#   bench/gpu.sh BUNDLE [--tiny]
#
# Rows: per workload, kiln's `bench` throughput with each build (and its blocking reads from the
# GPU per step, results read every 10 steps as a job reads them), PyTorch's (torch_ref.py on the
# same model, batch and loop) and the ratios; then the book's ResNet-18 job through the service,
# per build: first-step seconds from cold caches, first-step seconds after a restart (the
# autotune store and shader caches kept), the seconds of epoch 1 and epoch 2, and the slowest
# step and evaluation batch of those epochs against the median step (bench/step_times.py).
#
# It keeps to a time budget (KILN_GPU_BUDGET seconds, default 450, under the 8 minutes it is
# meant to take on an H100): a row that would start past it is printed as skipped. Rows run in
# order of value: PyTorch, the WGSL build, the SPIR-V build, then the service job.
#
# --tiny tests the plumbing where there is no NVIDIA GPU (llvmpipe, PyTorch on the CPU): small
# batches, few steps, and a LeNet-BN job on generated images in place of the ResNet-18 job. Its
# budget defaults to 1,500 s: llvmpipe compiles each kernel in seconds, and the service job alone
# takes minutes there. It wants llvmpipe through Vulkan (Mesa's mesa-vulkan-drivers): through
# OpenGL, wgpu gives up on its context lock while a large kernel compiles (a panic, "Could not
# lock adapter context").
#
# Environment: PYTHON (default python3, must import torch), TORCH_DEVICE (default cuda; cpu
# for --tiny), VK_DRIVER_FILES (default NVIDIA's ICD where it is installed).
set -uo pipefail

bundle=${1:?usage: bench/gpu.sh BUNDLE [--tiny]}
tiny=false
[[ ${2:-} == --tiny ]] && tiny=true
bundle=$(cd "$bundle" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
budget=${KILN_GPU_BUDGET:-$($tiny && echo 1500 || echo 450)}
python=${PYTHON:-python3}
started=$SECONDS
work=$(mktemp -d)
server=
trap '[[ -n $server ]] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
# Without an XDG_RUNTIME_DIR, Mesa's Vulkan driver (libwayland, probing for a display) prints 16
# errors at every start of kiln on llvmpipe (--tiny).
[[ -n ${XDG_RUNTIME_DIR:-} ]] || { export XDG_RUNTIME_DIR=$work/xdg; mkdir -m 700 "$XDG_RUNTIME_DIR"; }
log() { echo "[gpu.sh $((SECONDS - started))s] $*" >&2; }
left() { echo $((budget - (SECONDS - started))); }

# --- Unpack ---------------------------------------------------------------------------------
sysroot=$work/sysroot
mkdir -p "$sysroot"
for deb in "$bundle"/debs/*.deb; do
    [[ -e $deb ]] && dpkg -x "$deb" "$sysroot"
done
export LD_LIBRARY_PATH=$sysroot/usr/lib/x86_64-linux-gnu:$sysroot/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z ${VK_DRIVER_FILES:-} && -f $nvidia_icd ]]; then
    export VK_DRIVER_FILES=$nvidia_icd
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
builds=()
for build in wgsl spirv; do
    for packed in "$bundle/kiln-$build.xz" "$bundle/kiln-$build"; do
        [[ -f $packed ]] || continue
        if [[ $packed == *.xz ]]; then xz -dc "$packed" >"$work/kiln-$build"; else cp "$packed" "$work/kiln-$build"; fi
        chmod +x "$work/kiln-$build"
        builds+=("$build")
        break
    done
done
[[ ${#builds[@]} -gt 0 ]] || { echo "no kiln-wgsl or kiln-spirv binary in $bundle" >&2; exit 1; }
data=$work/data
mkdir -p "$data/datasets/fashion-mnist"
cp "$bundle"/fashion-mnist/* "$data/datasets/fashion-mnist/" 2>/dev/null
data_dir_fmnist=$data/datasets/fashion-mnist
torch_ref=$bundle/torch_ref.py

if $tiny; then
    torch_device=${TORCH_DEVICE:-cpu}
    workloads=(lenet_bn:8:2 rnn:4:2)
    job_epochs=2
else
    torch_device=${TORCH_DEVICE:-cuda}
    workloads=(lenet_bn:256:30 lenet_bn:1024:20 resnet18:256:10 densenet:256:10 rnn:32:30 gru:32:30 lstm:32:30)
    job_epochs=2
fi
log "builds: ${builds[*]}; workloads: ${workloads[*]}; budget ${budget}s"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' >&2

# --- Throughput -----------------------------------------------------------------------------
rate() { grep -oE '(examples|tokens)_per_sec=[0-9.]+' | tail -1 | cut -d= -f2; }
declare -A result syncs
run_bench() { # key command... : the throughput, or why there is none
    local key=$1 limit
    shift
    limit=$(left)
    if ((limit < 20)); then result[$key]="skipped (time)"; return; fi
    local out
    out=$(timeout "$limit" "$@" 2>"$work/stderr") || true
    local r
    r=$(rate <<<"$out")
    if [[ -n $r ]]; then result[$key]=$r; else result[$key]="failed"; tail -3 "$work/stderr" >&2; fi
    syncs[$key]=$(grep -oE 'host_syncs_per_step=[0-9.]+' <<<"$out" | tail -1 | cut -d= -f2)
    log "$key: ${result[$key]}"
}
cd "$work" || exit 1
for w in "${workloads[@]}"; do
    IFS=: read -r model batch steps <<<"$w"
    run_bench "torch:$w" "$python" "$torch_ref" "$model" "$steps" "$batch" "$torch_device"
done
for build in "${builds[@]}"; do
    for w in "${workloads[@]}"; do
        IFS=: read -r model batch steps <<<"$w"
        # Each build keeps its own autotune store, shared by its workloads.
        run_bench "$build:$w" env KILN_GPU_CACHE_DIR="$work/bench-cache-$build" \
            "$work/kiln-$build" bench --model "$model" --batch "$batch" --steps "$steps" --warmup 2 --backends wgpu
    done
done

# --- The book's ResNet-18 job through the service -------------------------------------------
json() { "$python" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
start_server() { # build data_dir
    local port=$((20000 + RANDOM % 20000))
    KILN_DATA_DIR=$2 KILN_BIND=127.0.0.1:$port KILN_LOG=warn,kiln::train=debug "$work/kiln-$1" serve >"$work/server.log" &
    server=$!
    base=http://127.0.0.1:$port
    until curl -sf "$base/readyz" >/dev/null; do
        kill -0 "$server" 2>/dev/null || return 1
        sleep 0.2
    done
}
stop_server() { kill -TERM "$server"; wait "$server"; server=; }
job_body() { # epochs
    if $tiny; then
        "$python" -c "import json; print(json.dumps({'model': {'kind': 'lenet_bn'}, 'data': {'dataset': 'synthetic_images', 'train_size': 96, 'test_size': 32}, 'training': {'epochs': $1, 'batch_size': 32, 'seed': 42, 'optimizer': {'kind': 'sgd', 'lr': 0.05}}, 'backend': 'wgpu'}))"
    else
        # Without Fashion-MNIST in the bundle: generated images of the same number and shape.
        local data='None'
        [[ -z $(ls "$data_dir_fmnist" 2>/dev/null) ]] && data="{'dataset': 'synthetic_images', 'train_size': 60000, 'test_size': 10000, 'resize': 96}"
        "$python" -c "import json; d = json.load(open('$repo/examples/resnet18-fashion-mnist.json')); d['training']['epochs'] = $1; d['backend'] = 'wgpu'; d['data'] = $data or d['data']; print(json.dumps(d))"
    fi
}
wait_job() { # id predicate deadline
    while (($(left) > 0)); do
        local job
        job=$(curl -sf "$base/jobs/$1") || return 1
        if [[ $(json "$2" <<<"$job") == True ]]; then echo "$job"; return 0; fi
        sleep 1
    done
    return 1
}
declare -A service
for build in "${builds[@]}"; do
    if (($(left) < 60)); then service[$build]="skipped (time)"; continue; fi
    dir=$work/service-$build
    mkdir -p "$dir/datasets"
    cp -r "$data/datasets/fashion-mnist" "$dir/datasets/" 2>/dev/null
    start_server "$build" "$dir" || { service[$build]="server did not start"; continue; }
    id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d "$(job_body "$job_epochs")" | json 'd["id"]')
    job=$(wait_job "$id" 'd["status"] in ("succeeded", "failed", "cancelled")') || job='{"status": "unfinished"}'
    cold=$(json '"%.1f" % d["first_step_seconds"] if d.get("first_step_seconds") else "n/a"' <<<"$job")
    epochs=$(curl -sf "$base/jobs/$id/metrics" | json '" / ".join("%.1f" % e["seconds"] for e in d["epochs"]) or "n/a"')
    steady=$("$python" "$repo/bench/step_times.py" "" <"$work/server.log" | sed 's/^ //')
    log "$build service, cold: $(json 'd["status"]' <<<"$job"), first step $cold s, epochs $epochs s; $steady"
    stop_server
    warm=n/a
    if (($(left) > 20)) && start_server "$build" "$dir"; then
        id=$(curl -sf -XPOST "$base/jobs" -H 'content-type: application/json' -d "$(job_body 1)" | json 'd["id"]')
        job=$(wait_job "$id" 'd.get("first_step_seconds") is not None or d["status"] in ("failed", "cancelled")') || job='{}'
        warm=$(json '"%.1f" % d["first_step_seconds"] if d.get("first_step_seconds") else "n/a"' <<<"$job")
        curl -sf -XPOST "$base/jobs/$id/cancel" >/dev/null
        stop_server
    fi
    service[$build]="$cold | $warm | $epochs | $steady"
done

# --- The table ------------------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
echo
echo "kiln vs PyTorch ($torch_device) on ${gpu:-$(uname -n)}, $(date -u +%F); throughput in examples/s (CNNs) or tokens/s (RNNs)"
echo
header="| workload | PyTorch"
rule="|---|---"
for build in "${builds[@]}"; do header+=" | kiln $build | ratio"; rule+="|---|---"; done
echo "$header |"
echo "$rule|"
ratio() { awk -v k="$1" -v t="$2" 'BEGIN { if (k + 0 > 0 && t + 0 > 0) printf "%.2f×", k / t; else print "–" }'; }
for w in "${workloads[@]}"; do
    IFS=: read -r model batch steps <<<"$w"
    row="| $model, batch $batch | ${result[torch:$w]}"
    for build in "${builds[@]}"; do
        row+=" | ${result[$build:$w]} (${syncs[$build:$w]:-?} syncs/step) | $(ratio "${result[$build:$w]}" "${result[torch:$w]}")"
    done
    echo "$row |"
done
echo
job_label="the book's ResNet-18 job"
$tiny && job_label="a LeNet-BN job (--tiny)"
echo "| $job_label through the service | first step, cold (s) | first step after a restart (s) | epoch 1 / epoch 2 (s) | steps and evaluation batches of epochs 1-2 |"
echo "|---|---|---|---|---|"
for build in "${builds[@]}"; do
    echo "| kiln $build | ${service[$build]} |"
done
echo
log "done"
