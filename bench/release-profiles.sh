#!/usr/bin/env bash
# Builds kiln's release binary cold under several profile settings and compares them: build time,
# binary size, and LeNet-BN training throughput (`kiln bench`, batch 256, CPU), the binaries run
# alternately so that a machine's drift hits every variant alike.
#
#   bench/release-profiles.sh [VARIANT...]      # default: all; results in bench-out/release-profiles/
#
# Each variant builds into its own empty target directory (a cold build: every crate is compiled
# with the variant's settings). Settings are passed with `cargo --config`, so Cargo.toml is not
# edited. Run it on a quiet machine: it takes the machine for a long time.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench-out/release-profiles}"
rounds="${ROUNDS:-2}"
mkdir -p "$out"

declare -A settings=(
  [plain]=""
  [thin-cgu1]="--config profile.release.lto=\"thin\" --config profile.release.codegen-units=1"
  [fat-cgu1]="--config profile.release.lto=\"fat\" --config profile.release.codegen-units=1"
)
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(plain thin-cgu1 fat-cgu1)

for v in "${variants[@]}"; do
  dir="$out/target-$v"
  if [ ! -x "$dir/release/kiln" ]; then
    rm -rf "$dir"
    start=$(date +%s)
    # shellcheck disable=SC2086 # the settings are separate words on purpose
    CARGO_TARGET_DIR="$dir" cargo build --release --locked ${settings[$v]} >"$out/build-$v.log" 2>&1
    echo $(( $(date +%s) - start )) >"$out/build-$v.seconds"
  fi
done

for round in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    "$out/target-$v/release/kiln" bench --model lenet_bn --batch 256 --steps 30 --backends cpu \
      >"$out/bench-$v-$round.txt" 2>/dev/null
  done
done

printf '| variant | cold build (s) | binary (MB) | LeNet-BN b256 examples/s, round by round |\n|---|---|---|---|\n'
for v in "${variants[@]}"; do
  size=$(stat -c %s "$out/target-$v/release/kiln")
  speeds=$(for round in $(seq "$rounds"); do
    grep -o 'examples_per_sec=[0-9.]*' "$out/bench-$v-$round.txt" | head -n 1 | cut -d= -f2
  done | paste -sd ' ')
  mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')
  printf '| %s | %s | %s | %s |\n' "$v" "$(cat "$out/build-$v.seconds")" "$mb" "$speeds"
done
