#!/bin/sh
# Lay out, under $1, the files the runtime stage copies over its base image. Needs the
# nvidia-pytriton wheel installed in the running Python (the venv's).
#
# NVIDIA's tritonserver image (/opt/tritonserver/bin/tritonserver exists): nothing of the wheel. The
# image's own Python-backend stub belongs to the image's Triton release and was built for the image's
# python3, which the venv uses (python311.sh): the build fails if that stub does not link the venv's
# libpython, since a stub of another release (the wheel's) would not match the image's backend.
# Any other base (the local Debian base of `make images`): the wheel's Triton (CPU build) becomes
# /opt/tritonserver in NVIDIA's layout (bin/, backends/, caches/, lib/), so tritonserver finds its
# backends at its default path and the launcher finds it on PATH, as in NVIDIA's image, with the
# wheel's stub for the venv's Python version.
set -eu
out=$1
py=$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mkdir -p "$out/opt/tritonserver/backends/python"
if [ -x /opt/tritonserver/bin/tritonserver ]; then
  stub=/opt/tritonserver/backends/python/triton_python_backend_stub
  if ! grep -q "libpython$py" "$stub"; then
    echo "triton-overlay: $stub does not link libpython$py (the venv's Python): use a base whose python3 NVIDIA built the stub for" >&2
    exit 1
  fi
  exit 0
fi
wheel=$(python -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("pytriton").origin).parent)')
stub=$wheel/tritonserver/python_backend_stubs/$py/triton_python_backend_stub
cp -R "$wheel/tritonserver/bin" "$wheel/tritonserver/backends" "$wheel/tritonserver/caches" "$out/opt/tritonserver/"
cp -R "$wheel/../nvidia_pytriton.libs" "$out/opt/tritonserver/lib"
find "$out/opt/tritonserver" -name __pycache__ -type d -prune -exec rm -rf {} +
chmod 0755 "$out/opt/tritonserver/bin/tritonserver"
cp "$stub" "$out/opt/tritonserver/backends/python/triton_python_backend_stub"
chmod 0755 "$out/opt/tritonserver/backends/python/triton_python_backend_stub"
