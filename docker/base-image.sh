#!/usr/bin/env bash
# Prints the name of a Debian bookworm image to build kiln's image from: debian:bookworm-slim where
# a registry serves it; else one made here, on a machine whose Docker engine cannot pull: debootstrap
# --variant=minbase from the Debian mirror this machine's apt is already configured with
# (KILN_DEBIAN_MIRROR overrides it; on a host with no bookworm source, deb.debian.org), then
# `docker import`. Does nothing when the image exists. Debootstrap needs root or sudo.
#
#   docker/base-image.sh [TAG]        # TAG: make this one (no pull); default kiln-local/debian:bookworm
set -euo pipefail
if [ $# -eq 0 ] && { docker image inspect debian:bookworm-slim >/dev/null 2>&1 \
  || timeout 120 docker pull -q debian:bookworm-slim >/dev/null 2>&1; }; then
  echo debian:bookworm-slim
  exit 0
fi
tag="${1:-kiln-local/debian:bookworm}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

# A URI of apt's sources that serves bookworm (deb822 .sources or one-line .list entries); the
# security archive is the one whose suite is bookworm-security.
apt_uri() {  # $1: suite
  {
    awk -v suite="$1" '
      /^URIs:/ { uris = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) print uris }
      /^$/ { uris = "" }' /etc/apt/sources.list.d/*.sources 2>/dev/null
    sed -E 's/\[[^]]*\] *//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2 }'
  } | head -n 1 || true
}
mirror="${KILN_DEBIAN_MIRROR:-$(apt_uri bookworm)}"
mirror="${mirror:-http://deb.debian.org/debian}"
security="$(apt_uri bookworm-security)"
security="${security:-http://deb.debian.org/debian-security}"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v debootstrap >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
fi

# Not under /tmp: debootstrap refuses a target on a nodev mount, as /tmp is on Debian 13.
work="$(mktemp -d /var/tmp/kiln-rootfs.XXXXXX)"
root="$work/root"
trap '$sudo rm -rf --one-file-system "$work"' EXIT
echo "debootstrap bookworm from $mirror" >&2
$sudo debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 20 "$work/debootstrap.log" >&2
  exit 1
}
# The image's apt: bookworm, its updates and its security archive, from the same mirrors.
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
  "$mirror" "$mirror" "$security" | $sudo tee "$root/etc/apt/sources.list" >/dev/null
$sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
  "$root"/usr/share/man/* "$root"/usr/share/locale/*
$sudo tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "$tag"
