#!/usr/bin/env bash
# What `make pod-test` needs from Debian: podman and runc to run the pods,
# debootstrap for the local base image. Idempotent and quiet: installs only what is missing.
set -euo pipefail
PACKAGES=(podman runc crun conmon catatonit netavark aardvark-dns containernetworking-plugins iptables
          fuse-overlayfs slirp4netns uidmap debootstrap debian-archive-keyring)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=()
  [[ $(id -u) == 0 ]] || SUDO=(sudo)
  echo "installing ${missing[*]}"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
podman --version
