#!/usr/bin/env bash
# Builds kiln's release binary cold under several profile settings and compares them: build time,
# binary size (stripped), LeNet-BN training throughput on the CPU (`kiln bench`, batch 256), and
# the CPU time a WGPU step takes to record (forward + backward + update of `kiln bench --backends
# wgpu`, LeNet-BN batch 32: tracing, fusing and launching kernels, the host's part of every GPU
# step; measured on whatever Vulkan device the machine has, llvmpipe included). The binaries run
# alternately so that a machine's drift hits every variant alike.
#
#   bench/release-profiles.sh [VARIANT...]      # default: all; results in bench-out/release-profiles/
#
# Each variant builds into its own empty target directory (a cold build: every crate is compiled
# with the variant's settings), with its symbol table kept so that `bench/binary-size.sh` can say
# where the size went; the size reported is that of a stripped copy. Every setting is passed with
# `cargo --config`, whatever Cargo.toml says, so Cargo.toml is not edited. Run it on a quiet
# machine: it takes the machine for a long time.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-out/release-profiles}"
rounds="${ROUNDS:-2}"
mkdir -p "$out"

# Crates that build GPU kernels (CubeCL's frontend, its kernel libraries, the shader compilers, the
# parsers of its configuration) or hold the GPU caches' database: their code runs when a kernel
# is first compiled or a device starts, not in every step.
kernel_crates=(cubecl-core cubecl-std cubecl-ir cubecl-opt cubecl-environment cubek-tile cubek-matmul
  cubek-reduce cubek-convolution pliron naga rustc_apfloat toml ciborium combine turso_core
  turso_parser aegis)
at_level() {  # $1: an opt-level, then crates: a --config setting each
  local level="$1" crate
  shift
  for crate in "$@"; do
    printf -- "--config profile.release.package.%s.opt-level=%s " "$crate" "$level"
  done
}
# The crates a CPU training step runs in (Burn's flex backend and autodiff, gemm, rayon, kiln's
# kernels and kiln), with what hashes and unpacks checkpoints and data sets.
hot_crates=(kiln kiln-kernels burn-flex burn-dispatch burn-autodiff burn-backend burn-tensor burn-nn
  burn-core burn-optim burn-std gemm gemm-common gemm-f32 gemm-f16 macerator rayon rayon-core half
  num-traits bytemuck sha2 flate2 miniz_oxide)
common="--config profile.release.strip=false --config profile.release.debug=false"
thin="--config profile.release.lto=\"thin\" --config profile.release.codegen-units=1"
declare -A settings=(
  [plain]="--config profile.release.lto=false --config profile.release.codegen-units=16"
  [thin-cgu1]="$thin"
  [fat-cgu1]="--config profile.release.lto=\"fat\" --config profile.release.codegen-units=1"
  [thin-cgu1-kernels-s]="$thin $(at_level '"s"' "${kernel_crates[@]}")"
  [thin-cgu1-kernels-z]="$thin $(at_level '"z"' "${kernel_crates[@]}")"
  # With LTO the whole program is optimised at the final crate's opt-level, so per-crate levels
  # change little: without it, everything but the hot crates optimised for size.
  [nolto-cgu1-size]="--config profile.release.lto=false --config profile.release.codegen-units=1 --config profile.release.opt-level=\"s\" $(at_level 3 "${hot_crates[@]}")"
)
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(plain thin-cgu1 fat-cgu1 thin-cgu1-kernels-s thin-cgu1-kernels-z nolto-cgu1-size)

for v in "${variants[@]}"; do
  dir="$out/target-$v"
  if [ ! -x "$dir/release/kiln" ]; then
    rm -rf "$dir"
    start=$(date +%s)
    # shellcheck disable=SC2086 # the settings are separate words on purpose
    CARGO_TARGET_DIR="$dir" cargo build --release --locked $common ${settings[$v]} >"$out/build-$v.log" 2>&1
    echo $(( $(date +%s) - start )) >"$out/build-$v.seconds"
  fi
  strip -o "$out/kiln-$v" "$dir/release/kiln"
done

for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    "$out/kiln-$v" bench --model lenet_bn --batch 256 --steps 30 --backends cpu \
      >"$out/bench-$v-$round.txt" 2>/dev/null
    "$out/kiln-$v" bench --model lenet_bn --batch 32 --steps 20 --backends wgpu \
      >"$out/bench-wgpu-$v-$round.txt" 2>/dev/null
  done
done

printf '| variant | cold build (s) | binary (MB) | LeNet-BN b256 CPU, examples/s | WGPU step recorded in (ms) |\n'
printf '|---|---|---|---|---|\n'
for v in "${variants[@]}"; do
  mb=$(awk -v s="$(stat -c %s "$out/kiln-$v")" 'BEGIN { printf "%.1f", s / 1e6 }')
  speeds=$(for round in $(seq "$rounds"); do
    grep -o 'examples_per_sec=[0-9.]*' "$out/bench-$v-$round.txt" | head -n 1 | cut -d= -f2
  done | paste -sd ' ')
  # "per step: T ms = upload U + forward F + backward B + update P + readback R": F + B + P.
  record=$(for round in $(seq "$rounds"); do
    awk '/per step:/ { printf "%.2f\n", $10 + $13 + $16; exit }' "$out/bench-wgpu-$v-$round.txt"
  done | paste -sd ' ')
  printf '| %s | %s | %s | %s | %s |\n' "$v" "$(cat "$out/build-$v.seconds")" "$mb" "$speeds" "$record"
done
