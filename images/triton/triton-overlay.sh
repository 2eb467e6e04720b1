#!/bin/sh
# Lay out, under $1, the files the runtime stage copies over its base image. Needs the
# nvidia-pytriton wheel installed in the running Python.
#
# NVIDIA's tritonserver image (/opt/tritonserver/bin/tritonserver exists): only the Python-backend
# stub is replaced by the wheel's stub for Python 3.11 (the image's own is built for its 3.10).
# Any other base (the local Debian base of `make images`): the wheel's Triton (CPU build) becomes
# /opt/tritonserver in NVIDIA's layout (bin/, backends/, caches/, lib/), so tritonserver finds its
# backends at its default path and the launcher finds it on PATH, as in NVIDIA's image.
set -eu
out=$1
wheel=$(python -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("pytriton").origin).parent)')
stub=$wheel/tritonserver/python_backend_stubs/3.11/triton_python_backend_stub
mkdir -p "$out/opt/tritonserver/backends/python"
if [ ! -x /opt/tritonserver/bin/tritonserver ]; then
  cp -R "$wheel/tritonserver/bin" "$wheel/tritonserver/backends" "$wheel/tritonserver/caches" "$out/opt/tritonserver/"
  cp -R "$wheel/../nvidia_pytriton.libs" "$out/opt/tritonserver/lib"
  find "$out/opt/tritonserver" -name __pycache__ -type d -prune -exec rm -rf {} +
  chmod 0755 "$out/opt/tritonserver/bin/tritonserver"
fi
cp "$stub" "$out/opt/tritonserver/backends/python/triton_python_backend_stub"
chmod 0755 "$out/opt/tritonserver/backends/python/triton_python_backend_stub"
