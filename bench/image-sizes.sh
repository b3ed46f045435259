#!/usr/bin/env bash
# Builds kiln's image from docker/Dockerfile with a given binary (KILN_PREBUILT), as the default
# image (with llvmpipe) and as the GPU-only one (SOFTWARE_VULKAN=false), and prints their sizes,
# unpacked and gzipped (`docker save | gzip -1`, about what a registry stores and a pull fetches).
# The base is docker/base-image.sh's: debian:bookworm-slim where it can be pulled, else a debootstrap.
# The images are tagged kiln-size:default and kiln-size:gpu-only and removed at the end.
#
#   bench/image-sizes.sh BINARY          # e.g. target/release/kiln
set -euo pipefail
binary="$(realpath "$1")"
cd "$(dirname "$0")/.."
base="$(docker/base-image.sh)"
context="$(mktemp -d)"
trap 'rm -rf "$context"; docker rmi -f kiln-size:default kiln-size:gpu-only >/dev/null 2>&1 || true' EXIT
docker/prebuilt-context.sh "$binary" "$context"

mb() { awk -v s="$1" 'BEGIN { printf "%.0f MB", s / 1e6 }'; }
printf '| image (binary %s stripped) | size | gzipped |\n|---|---|---|\n' "$(mb "$(stat -c %s "$context/kiln")")"
for variant in default gpu-only; do
  software=true
  [ "$variant" = default ] || software=false
  docker build -q -f docker/Dockerfile --build-arg RUST_IMAGE="$base" --build-arg RUNTIME_IMAGE="$base" \
    --build-arg KILN_PREBUILT=kiln --build-arg SOFTWARE_VULKAN="$software" -t "kiln-size:$variant" "$context" \
    >"$context/build.log" 2>&1 || { cat "$context/build.log" >&2; exit 1; }
  size="$(docker image inspect -f '{{.Size}}' "kiln-size:$variant")"
  gzipped="$(docker save "kiln-size:$variant" | gzip -1 | wc -c)"
  printf '| %s | %s | %s |\n' "$variant" "$(mb "$size")" "$(mb "$gzipped")"
done
docker image prune -f --filter label=org.opencontainers.image.title=kiln >/dev/null
