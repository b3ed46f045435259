#!/usr/bin/env bash
# Fills DIR with a build context for docker/Dockerfile that takes a binary built on the host
# (`--build-arg KILN_PREBUILT=kiln`): the stripped binary, the manifests the builder stage copies,
# and the script that gathers the runtime's files. docker/smoke-test.sh and bench/image-sizes.sh
# build from it.
#
#   docker/prebuilt-context.sh BINARY DIR
set -euo pipefail
binary="$(realpath "$1")"
dir="$(realpath "$2")"
cd "$(dirname "$0")/.."
mkdir -p "$dir/kernels" "$dir/docker"
strip -o "$dir/kiln" "$binary"
cp Cargo.toml Cargo.lock "$dir/"
cp kernels/Cargo.toml "$dir/kernels/"
cp docker/runtime-root.sh "$dir/docker/"
