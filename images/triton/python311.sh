#!/bin/sh
# Install Python 3.11 where the base image lacks it (NVIDIA's tritonserver image is Ubuntu 22.04
# with Python 3.10; the local Debian base has 3.11 already). `build` adds the venv module.
# libpython3.11: Triton's Python-backend stub links it.
set -eu
packages="python3.11 libpython3.11"
if [ "${1:-}" = build ]; then packages="$packages python3.11-venv"; fi
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $missing
  rm -rf /var/lib/apt/lists/*
fi
