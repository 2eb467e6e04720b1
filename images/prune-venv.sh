#!/bin/sh
# Remove from a virtual environment what a serving container never runs (argument: the venv).
# torch: C++ headers (only for compiling extensions), C++ test programs and build tools; pandas'
# test suite. The images never compile code at run time (no torch.compile, no cpp_extension).
set -eu
site=$(echo "$1"/lib/python3*/site-packages)
rm -rf "$site"/torch/include "$site"/torch/test "$site"/torch/share/cmake "$site"/pandas/tests
if [ -d "$site/torch/bin" ]; then
  find "$site/torch/bin" -mindepth 1 ! -name torch_shm_manager -exec rm -rf {} +
fi
