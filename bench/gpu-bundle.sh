#!/usr/bin/env bash
# Packs what bench/gpu.sh needs on a GPU machine without network into one folder, at most 60 MiB
# (what travels to such a machine with the repository is 64 MiB):
#   kiln-wgsl.xz, kiln-spirv.xz   release binaries (`cargo build --release`, and with
#                                 `--features vulkan` for SPIR-V), xz-compressed
#   debs/                         the Vulkan loader and glvnd libraries, as Debian packages
#   fashion-mnist/                the data set's four files, when there is room
#   torch_ref.py                  the PyTorch reference script
#
#   bench/gpu-bundle.sh OUT WGSL_BINARY [SPIRV_BINARY] [TORCH_REF]
#
# TORCH_REF defaults to ../shared/bench/torch_ref.py beside the repository. Needs apt-get (to
# download the packages, not install them) and xz.
set -euo pipefail
out=${1:?usage: bench/gpu-bundle.sh OUT WGSL_BINARY [SPIRV_BINARY] [TORCH_REF]}
wgsl=${2:?usage: bench/gpu-bundle.sh OUT WGSL_BINARY [SPIRV_BINARY] [TORCH_REF]}
spirv=${3:-}
repo=$(cd "$(dirname "$0")/.." && pwd)
torch_ref=${4:-$repo/../shared/bench/torch_ref.py}
limit=$((60 << 20))

mkdir -p "$out/debs"
xz -T0 -9 -c "$wgsl" >"$out/kiln-wgsl.xz"
[[ -n $spirv ]] && xz -T0 -9 -c "$spirv" >"$out/kiln-spirv.xz"
cp "$torch_ref" "$out/torch_ref.py"
# amd64 packages whatever this machine is; their own lists, so the system's are untouched.
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p "$lists/partial"
apt_opts=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o "Dir::State::Lists=$lists")
apt-get "${apt_opts[@]}" -qq update
(cd "$out/debs" && apt-get "${apt_opts[@]}" -qq download libvulkan1 libglvnd0 libegl1 libglx0 libgl1 libopengl0 libgles2)

size() { du -sb "$out" | cut -f1; }
fmnist=/usr/share/datasets/fashion-mnist
data_bytes=$(du -sbL "$fmnist" 2>/dev/null | cut -f1 || echo 0)
if [[ -d $fmnist ]] && (($(size) + data_bytes <= limit)); then
    mkdir -p "$out/fashion-mnist"
    cp -L "$fmnist"/*-ubyte* "$out/fashion-mnist/"
else
    echo "Fashion-MNIST left out (not installed, or no room): the service job needs it" >&2
fi
echo "bundle: $out, $(($(size) >> 20)) MiB" >&2
(($(size) <= limit)) || { echo "the bundle is over 60 MiB" >&2; exit 1; }
