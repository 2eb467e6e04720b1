#!/bin/sh
# Make sure the base image has the venv's Python as `python<version>` (`build`: with the venv module) and
# its shared library (Triton's Python-backend stub links it); `version` prints that version.
# The version is 3.11, except on NVIDIA's tritonserver image: there it is the image's own python3
# (26.03: Ubuntu 24.04, Python 3.12, which has no python3.11 package), the interpreter NVIDIA built the
# image's Python-backend stub for, so that stub of the image's own Triton release runs the venv.
# python:3.11-slim and the local Debian base have all of it; other bases get their distribution's packages.
# The first build steps are the same in every Dockerfile, so their layers are built once.
set -eu
version() {
  if [ -x /opt/tritonserver/bin/tritonserver ] && command -v python3 >/dev/null 2>&1; then
    python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])'
  else
    echo 3.11
  fi
}
if [ "${1:-}" = version ]; then version; exit 0; fi
py=$(version)
have() {
  command -v "python$py" >/dev/null 2>&1 || return 1
  "python$py" -c "import glob, sysconfig, sys; sys.exit(not glob.glob(sysconfig.get_config_var('LIBDIR') + '/libpython$py.so*'))" || return 1
  if [ "${1:-}" = build ]; then "python$py" -c 'import ensurepip, venv' 2>/dev/null || return 1; fi
}
if ! have "${1:-}"; then
  packages="python$py libpython$py"
  if [ "${1:-}" = build ]; then packages="$packages python$py-venv"; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $packages
  rm -rf /var/lib/apt/lists/*
fi
