#!/usr/bin/env bash
# Gathers kiln's runtime into an empty root file system, which the image's last stage copies onto
# `scratch`: the binary, the shared libraries it and the Vulkan stack load (found with ldd), the
# Vulkan driver manifests, the dynamic loader and its cache, a passwd with the `kiln` user, /data,
# /shared and /tmp. Nothing else of Debian: no shell, no package manager, no coreutils.
#
#   docker/runtime-root.sh BINARY ROOT SOFTWARE_VULKAN WITH_FASHION_MNIST
#
# Runs as root inside a Debian stage where apt has installed libvulkan1, libglvnd0, libx11-6,
# libxext6 (what NVIDIA's Vulkan driver, mounted in by the NVIDIA container toolkit, loads), and
# with SOFTWARE_VULKAN=true mesa-vulkan-drivers, of which only llvmpipe (lavapipe) is taken.
set -euo pipefail
binary="$1" root="$2" software="$3" fashion="$4"

# The path a library has in ldconfig's cache, e.g. /lib/x86_64-linux-gnu/libvulkan.so.1.
library() {
  ldconfig -p | awk -v name="$1" '$1 == name { print $NF; exit }' | grep . \
    || { echo "runtime-root: no $1 in ldconfig's cache" >&2; exit 1; }
}
# Copies a file to the same place under $root, following links, with its directory resolved so
# that /lib/x/libc.so.6 lands in usr/lib/x where /lib is a link to usr/lib (merged /usr).
put() {
  local dir
  dir="$(realpath "$(dirname "$1")")"
  mkdir -p "$root$dir"
  cp -L --preserve=mode "$1" "$root$dir/$(basename "$1")"
}
# Every shared library a file needs, the dynamic loader included.
put_libraries_of() {
  ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | while read -r lib; do
    put "$lib"
  done
}
put_with_libraries() {
  put "$1"
  put_libraries_of "$1"
}

mkdir -p "$root"
# Merged /usr: /lib, /lib64, /bin... are links to their /usr directories, as in the Debian they come from.
for link in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$link" ]; then ln -sfn "$(readlink "/$link")" "$root/$link"; fi
done

install -D -m 0755 "$binary" "$root/usr/local/bin/kiln"
put_libraries_of "$root/usr/local/bin/kiln"
# wgpu loads the Vulkan loader at run time (dlopen), so ldd does not list it; NVIDIA's driver
# (libGLX_nvidia) needs glvnd's dispatch library, libX11 and libXext from the image.
for lib in libvulkan.so.1 libGLdispatch.so.0 libX11.so.6 libXext.so.6; do
  put_with_libraries "$(library "$lib")"
done
if [ "$software" = true ]; then
  for manifest in /usr/share/vulkan/icd.d/lvp_icd.*.json; do
    put "$manifest"
    driver="$(sed -n 's/.*"library_path": *"\([^"]*\)".*/\1/p' "$manifest")"
    put_with_libraries "$driver"
  done
fi
if [ "$fashion" = true ]; then
  mkdir -p "$root/usr/share/datasets"
  cp -a /usr/share/datasets/fashion-mnist "$root/usr/share/datasets/"
fi

# The Debian copyright file of every package a file was taken from, where the base image kept them.
find "$root" -type f ! -path "$root/usr/local/*" ! -path "$root/usr/share/datasets/*" -printf '/%P\n' \
  | while read -r file; do dpkg-query -S "$file" 2>/dev/null || dpkg-query -S "${file#/usr}" 2>/dev/null || true; done \
  | cut -d: -f1 | sort -u | while read -r package; do
    if [ -f "/usr/share/doc/$package/copyright" ]; then put "/usr/share/doc/$package/copyright"; fi
  done

mkdir -p "$root/etc" "$root/data" "$root/shared" "$root/tmp"
cp -a /etc/ld.so.conf /etc/ld.so.conf.d "$root/etc/"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nkiln:x:10001:10001:kiln:/data:/usr/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nkiln:x:10001:\n' >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 1777 "$root/tmp"
# /shared: where replicas mount the volume they share (--shared-dir, docker/compose.yml); a new
# named volume takes the ownership of the directory it is mounted on.
chown 10001:10001 "$root/data" "$root/shared"
ldconfig -r "$root"
