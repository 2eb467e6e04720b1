#!/bin/sh
# Make sure the base image has Python 3.11 as `python3.11` (`build`: with the venv module) and its
# shared library (Triton's Python-backend stub links it). python:3.11-slim and the local Debian base
# have all of it; NVIDIA's tritonserver image (Ubuntu 22.04, Python 3.10) gets Ubuntu's packages.
# The first build steps are the same in every Dockerfile, so their layers are built once.
set -eu
have() {
  command -v python3.11 >/dev/null 2>&1 || return 1
  python3.11 -c 'import glob, sysconfig, sys; sys.exit(not glob.glob(sysconfig.get_config_var("LIBDIR") + "/libpython3.11.so*"))' || return 1
  if [ "${1:-}" = build ]; then python3.11 -c 'import ensurepip, venv' 2>/dev/null || return 1; fi
}
if ! have "${1:-}"; then
  packages="python3.11 libpython3.11"
  if [ "${1:-}" = build ]; then packages="$packages python3.11-venv"; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $packages
  rm -rf /var/lib/apt/lists/*
fi
