#!/usr/bin/env bash
# Smoke-test the huggingface and transformer images without any container registry:
# build a Debian bookworm base (Python 3.11) with debootstrap, build both images FROM it with
# podman, and run them the way the chart does (uid 1000, read-only root, all capabilities
# dropped, no privilege escalation, tmpfs /tmp and cache), serving the packaged all-MiniLM-L6-v2.
# The transformer talks to a Triton started on the host by `python -m hfserve.triton` (the Triton
# image needs nvcr.io's base, which is not reachable offline).
#
# Needs root, podman + runc + debootstrap (apt-get install podman runc debootstrap), a Debian
# mirror and PyPI (or a mirror: PIP_EXTRA_INDEX_URL / PIP_FIND_LINKS / PIP_CERT are passed on).
# Usage: images/smoke-local.sh            (from the repository root; leaves the images tagged)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
WORK=$(mktemp -d /tmp/hfserve-smoke.XXXXXX)
BASE=localhost/hfserve-smoke-base:bookworm
PODMAN_RUN=(podman run --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=30000:30000 --network host
            --read-only --user 1000:1000 --cap-drop ALL --security-opt no-new-privileges
            --tmpfs /tmp:mode=1777 --tmpfs /var/cache/hfserve:mode=1777)
TRITON_PGID=""

cleanup() {
  podman rm -f hfserve-smoke-hf hfserve-smoke-tr >/dev/null 2>&1 || true
  if [[ -n "$TRITON_PGID" ]]; then kill -TERM -- "-$TRITON_PGID" 2>/dev/null || true; sleep 3; kill -KILL -- "-$TRITON_PGID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() {  # url
  for _ in $(seq 1 100); do curl -sf "$1/v2/health/ready" >/dev/null && return 0; sleep 3; done
  echo "not ready: $1" >&2; return 1
}

check_embedding() {  # url
  curl -sf -X POST "$1/v1/models/minilm:predict" -H 'content-type: application/json' \
    -d '{"instances": ["a smoke test", "of the image"]}' \
  | "$PY" -c 'import json,sys; p=json.load(sys.stdin)["predictions"]; v=p[0]["embedding"] if isinstance(p[0],dict) else p[0]; assert len(p)==2 and len(v)==384, (len(p), len(v)); print("ok: 2 x", len(v))'
}

if ! podman image exists "$BASE"; then
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$WORK/rootfs"
  ln -sf python3 "$WORK/rootfs/usr/bin/python"
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE"
  rm -rf "$WORK/rootfs"
fi

# Build context: the files .dockerignore lets through (plus a README.md if the repo has none yet).
CTX="$WORK/ctx"
mkdir -p "$CTX/requirements"
cp "$REPO/pyproject.toml" "$REPO/.dockerignore" "$CTX/"
cp "$REPO/requirements/runtime.txt" "$REPO/requirements/constraints.txt" "$CTX/requirements/"
cp -r "$REPO/serving_code" "$REPO/images" "$CTX/"
if [[ -f "$REPO/README.md" ]]; then cp "$REPO/README.md" "$CTX/"; else echo "# hfserve" >"$CTX/README.md"; fi

BUILD=(podman build --isolation=chroot --network=host --build-arg "PYTHON_IMAGE=$BASE" --build-arg TORCH_INDEX_URL=)
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS; do
  [[ -n "${!var:-}" ]] && BUILD+=(--build-arg "$var=${!var}")
done
for dir in /opt/wheels /opt/pypi /opt/pypi-more; do [[ -d $dir ]] && BUILD+=(-v "$dir:$dir:ro"); done
if [[ -n "${PIP_CERT:-}" ]]; then BUILD+=(-v "$(dirname "$PIP_CERT"):/smoke-certs:ro" --build-arg "PIP_CERT=/smoke-certs/$(basename "$PIP_CERT")"); fi

"${BUILD[@]}" -f "$CTX/images/huggingface/Dockerfile" -t ghcr.io/hfserve/huggingface-runtime:smoke "$CTX"
"${BUILD[@]}" -f "$CTX/images/transformer/Dockerfile" -t ghcr.io/hfserve/transformer:smoke "$CTX"

MODEL_DIR=$("$PY" -m hfserve.packaged_model)

# 1) the in-process runtime
HF_PORT=$(free_port)
"${PODMAN_RUN[@]}" -d --name hfserve-smoke-hf -v "$MODEL_DIR:/mnt/models:ro" ghcr.io/hfserve/huggingface-runtime:smoke \
  --model_name=minilm --model_dir=/mnt/models --bind_address=127.0.0.1 --http_port="$HF_PORT" --grpc_port="$(free_port)"
wait_ready "http://127.0.0.1:$HF_PORT" && check_embedding "http://127.0.0.1:$HF_PORT"

# 2) the transformer in front of a host Triton that exports the tokenizer to a shared directory
mkdir -p "$WORK/tokenizer" && chmod 755 "$WORK/tokenizer"
T_GRPC=$(free_port)
setsid "$PY" -m hfserve.triton --model_name=minilm --model_dir="$MODEL_DIR" --repository_dir="$WORK/repo" \
  --tokenizer_export_dir="$WORK/tokenizer" --bind_address=127.0.0.1 --http_port="$(free_port)" \
  --grpc_port="$T_GRPC" --metrics_port="$(free_port)" >"$WORK/triton.log" 2>&1 &
TRITON_PGID=$!
TR_PORT=$(free_port)
"${PODMAN_RUN[@]}" -d --name hfserve-smoke-tr -v "$WORK/tokenizer:/mnt/tokenizer:ro" ghcr.io/hfserve/transformer:smoke \
  --model_name=minilm --model_dir=/mnt/tokenizer --model_dir_wait_s=300 --predictor_host="127.0.0.1:$T_GRPC" \
  --bind_address=127.0.0.1 --http_port="$TR_PORT" --grpc_port="$(free_port)"
wait_ready "http://127.0.0.1:$TR_PORT" && check_embedding "http://127.0.0.1:$TR_PORT"
echo "smoke test passed"
