#!/usr/bin/env bash
# Fill images/wheelhouse/ with the wheels of the CPU images (`make wheelhouse`, run by `make images`).
#
# Every wheel is pinned by requirements/{runtime,transformer,constraints}.txt; nvidia-pytriton (the
# Triton the CPU Triton image runs) is pinned in constraints.txt too; pyproject.toml's build requirements
# (setuptools) build hfserve itself. torch must be the CPU build: pip
# finds it in its configured find-links (`pip config list`) or in TORCH_INDEX_URL
# (https://download.pytorch.org/whl/cpu); a CUDA torch from PyPI would add GBs of nvidia-* wheels,
# so the script stops instead. Downloads are kept in WHEELHOUSE_CACHE under a hash of the
# requirement files, so an unchanged set is linked in without asking any index.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
OUT=images/wheelhouse
CACHE=${WHEELHOUSE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hfserve/wheelhouse}
REQS=(requirements/runtime.txt requirements/transformer.txt requirements/constraints.txt)
pin() { sed -n "s/^$1==\(.*\)$/\1/p" requirements/constraints.txt; }
TORCH=$(pin torch)
PYTRITON=$(pin nvidia-pytriton)
[[ -n $TORCH && -n $PYTRITON ]] || { echo "torch or nvidia-pytriton is not pinned in requirements/constraints.txt" >&2; exit 1; }

BUILD_REQS=$("$PY" -c 'import tomllib; print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))')
KEY=$({ cat "${REQS[@]}" "$0"; echo "$BUILD_REQS"; } | sha256sum | cut -c1-16)
DIR=$CACHE/$KEY
PIP=("$PY" -m pip download --quiet --disable-pip-version-check --only-binary=:all:
     ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"})

if [[ ! -f $DIR/.complete ]]; then
  mkdir -p "$CACHE"
  TMP=$(mktemp -d "$CACHE/.partial.XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  # torch first, alone: stop before a CUDA build pulls its nvidia-* dependencies.
  "${PIP[@]}" --no-deps --dest "$TMP" "torch==$TORCH" 2> >(grep -v '^WARNING: Location' >&2)
  if ! compgen -G "$TMP/torch-$TORCH+cpu-*.whl" >/dev/null; then
    echo "pip offers no CPU build of torch $TORCH (got: $(ls "$TMP"))." >&2
    echo "Set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu or put the wheel in pip's find-links." >&2
    exit 1
  fi
  "${PIP[@]}" --dest "$TMP" -r requirements/runtime.txt -r requirements/transformer.txt \
    -c requirements/constraints.txt "nvidia-pytriton==$PYTRITON" $BUILD_REQS 2> >(grep -v '^WARNING: Location' >&2)
  if compgen -G "$TMP/nvidia_cu*" >/dev/null || compgen -G "$TMP/nvidia_*_cu1*" >/dev/null; then
    echo "CUDA wheels in the wheelhouse: $(cd "$TMP" && ls nvidia_* | tr '\n' ' ')" >&2
    exit 1
  fi
  touch "$TMP/.complete"
  rm -rf "$DIR"
  mv "$TMP" "$DIR"
  trap - EXIT
fi

# The build context gets exactly this set: hard links where the file system allows, else copies.
find "$OUT" -maxdepth 1 -name '*.whl' -delete
cp -l "$DIR"/*.whl "$OUT"/ 2>/dev/null || cp "$DIR"/*.whl "$OUT"/
echo "wheelhouse: $(find "$OUT" -maxdepth 1 -name '*.whl' | wc -l) wheels ($(du -sh "$DIR" | cut -f1)) from $DIR"
