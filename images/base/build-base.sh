#!/usr/bin/env bash
# Build the local Debian base image of the three images (`make base-image`): a debootstrap of
# Debian with Python 3.11, imported into docker or podman. No registry is needed, only a Debian
# mirror. The tag names a hash of this script, so a changed recipe builds a new base and an
# unchanged one is reused (the engine's image store is the cache).
#
# Usage: images/base/build-base.sh TAG        (root; debootstrap installed)
# Env:   CONTAINER_ENGINE (podman), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (http://deb.debian.org/debian)
set -euo pipefail

TAG=${1:?usage: build-base.sh TAG}
ENGINE=${CONTAINER_ENGINE:-podman}
SUITE=${DEBIAN_SUITE:-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-venv: the build stages create /opt/venv; python-is-python3: the chart runs `python`;
# libpython3.11: Triton's Python-backend stub links it; ca-certificates: pip in the build stages.
PACKAGES=python3,python3-venv,python-is-python3,libpython3.11,ca-certificates

if "$ENGINE" image inspect "$TAG" >/dev/null 2>&1; then
  echo "base image $TAG exists"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap not found (apt-get install debootstrap)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "debootstrap needs root" >&2; exit 1; }

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/hfserve-base.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 \
  || { tail -n 40 "$ROOTFS.log" >&2; rm -f "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
# Nothing the images need at run time: package caches and lists, documentation, locales.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/lib/apt/lists/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* "$ROOTFS"/root/.cache
find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +
find "$ROOTFS"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
echo "deb $MIRROR $SUITE main" >"$ROOTFS/etc/apt/sources.list"

tar --numeric-owner -C "$ROOTFS" -c . \
  | "$ENGINE" import --change 'CMD ["/bin/bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$TAG" >/dev/null
echo "built base image $TAG ($SUITE, $PACKAGES)"
