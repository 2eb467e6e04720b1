# Every command a workflow or a person runs is a target here. `make help` lists them by section: `##@ Title`
# starts a section, `## text` after a target describes it, and a `## VAR: text` line above a variable describes it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help venv serve serve-triton \
  lint test test-fast test-unit test-server test-triton test-pods test-soak test-gpu-pack conformance attack chart-lint chart-test actionlint \
  bench bench-engines bench-head load chaos rss-soak time-to-ready capacity autoscale-sim \
  gpu-info gpu-wheelhouse gpu-check gpu-check-dry conformance-gpu \
  images base-image wheelhouse podman-conf pod-test ci-tools prometheus-tools image-smoke \
  kserve-install knative-install kind-load cluster-test cluster-debug \
  release-check release-dry-run release-chart release-sign

help: ## List the targets by section, and the variables they read ([default] in brackets)
	@awk 'function flush(  i, j, x) { \
	    if (!title) return; printf "\n%s\n", title; \
	    for (i = 2; i <= nt; i++) for (j = i; j > 1 && t[j - 1] > t[j]; j--) { x = t[j]; t[j] = t[j - 1]; t[j - 1] = x } \
	    for (i = 2; i <= nv; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { x = v[j]; v[j] = v[j - 1]; v[j - 1] = x } \
	    for (i = 1; i <= nt; i++) print t[i]; for (i = 1; i <= nv; i++) print v[i]; nt = nv = 0 } \
	  BEGIN { print "Usage: make <target> [VARIABLE=value ...]" } \
	  /^##@ / { flush(); title = substr($$0, 5); next } \
	  /^## [A-Z][A-Z0-9_]*: / { var = substr($$0, 4); sub(/:.*/, "", var); doc = substr($$0, length(var) + 6); next } \
	  var != "" { if (index($$0, var " ?=") == 1) { val = substr($$0, length(var) + 4); sub(/^ +/, "", val); \
	      if (val != "" && !index(val, "$$")) doc = doc " [" val "]"; v[++nv] = sprintf("    %-20s %s", var, doc) } var = "" } \
	  /^[a-z][a-z0-9-]*:.*## / { name = $$0; sub(/:.*/, "", name); d = $$0; sub(/^[^#]*## /, "", d); \
	      t[++nt] = sprintf("  %-18s %s", name, d) } \
	  END { flush() }' $(firstword $(MAKEFILE_LIST))

##@ Start here

## TORCH_INDEX_URL: an extra pip index for torch, e.g. PyTorch's CPU index: the venv, gpu-check-dry and the wheelhouse use it
TORCH_INDEX_URL ?=
TORCH_INDEX = $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
## HOST: the address make serve and serve-triton listen on
HOST ?= 127.0.0.1
## PORT: the HTTP port of make serve and serve-triton (gRPC on PORT + 1)
PORT ?= 8080
## MODEL_NAME: the name the model is served under
MODEL_NAME ?= minilm
## MODEL_DIR: the model folder make serve and serve-triton load [the packaged all-MiniLM-L6-v2]
MODEL_DIR ?= $(shell $(PY) -m hfserve.packaged_model 2>/dev/null)
SERVE_MODEL_DIR = "$(or $(MODEL_DIR),$(error MODEL_DIR is empty and the packaged MiniLM was not found: make venv, or set MODEL_DIR))"
## TRITON_HTTP_PORT: Triton's HTTP port under serve-triton (and TRITON_GRPC_PORT, TRITON_METRICS_PORT)
TRITON_HTTP_PORT ?= 8000
TRITON_GRPC_PORT ?= 8001
TRITON_METRICS_PORT ?= 8002

$(STAMP): requirements/runtime.txt requirements/dev.txt requirements/constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt $(TORCH_INDEX)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP) ## Create .venv with the pinned dependencies

serve: $(STAMP) ## Serve MODEL_DIR with the kserve-huggingface runtime on HOST:PORT
	$(PY) -m hfserve.huggingface --model_name $(MODEL_NAME) --model_dir $(SERVE_MODEL_DIR) \
	  --bind_address $(HOST) --http_port $(PORT) --grpc_port $$(( $(PORT) + 1 ))

serve-triton: $(STAMP) ## Serve MODEL_DIR with the Triton runtime: transformer on HOST:PORT, a real Triton behind it
	$(PY) -m devkit.triton_pair --model_name $(MODEL_NAME) --model_dir $(SERVE_MODEL_DIR) \
	  --bind_address $(HOST) --port $(PORT) --triton_http_port $(TRITON_HTTP_PORT) \
	  --triton_grpc_port $(TRITON_GRPC_PORT) --triton_metrics_port $(TRITON_METRICS_PORT)

##@ Tests

lint: $(STAMP) ## ruff: pyflakes errors and import order across the Python code
	$(VENV)/bin/ruff check serving_code tests conformance loadtests devkit charts/tools

# Tiers (markers given by tests/conftest.py, listed in pyproject.toml): unit, server, triton, pods, soak; `fast`
# is unit plus the cheap runtime-1 modules. Reports: reports/junit/ (JUnit XML), the 30 slowest tests printed.
PYTEST_REPORT = --durations=30 --junitxml=reports/junit/$(1).xml
test: $(STAMP) prometheus-tools ## Run the whole test suite: lint, every tier of tests/ but the GPU pack, `make conformance`, then `make pod-test`
	$(MAKE) lint
	$(PY) -m pytest -q -rs -m "not gpu_pack" $(call PYTEST_REPORT,tests)
	$(MAKE) conformance TARGET=local
	$(MAKE) ci-tools
	$(MAKE) pod-test

test-fast: $(STAMP) prometheus-tools ## Lint, then the unit tier and the cheap runtime-1 tests (a few minutes on 2 cores)
	$(MAKE) lint
	$(PY) -m pytest -q -rs -m fast $(call PYTEST_REPORT,fast)

TIER = $(PY) -m pytest -q -rs -m "$(1) and not gpu_pack" $(call PYTEST_REPORT,$(1))
test-unit: $(STAMP) prometheus-tools ## Tier unit: no server process (chart renders and models, task logic, engines, tooling)
	$(call TIER,unit)
test-server: $(STAMP) ## Tier server: runtime-1 processes (tests/huggingface, runtime 1 in tests/reference, options, fuzz)
	$(call TIER,server)
test-triton: $(STAMP) prometheus-tools ## Tier triton: real tritonserver (tests/triton, runtime 2 in tests/reference)
	$(call TIER,triton)
test-pods: $(STAMP) ## Tier pods: chart-built pods (pod emulation); the cluster tests when KUBECONFIG has one
	$(call TIER,pods)
test-soak: $(STAMP) ## Tier soak: chaos, the short load run (the GPU pack is `make test-gpu-pack`)
	$(call TIER,soak)

test-gpu-pack: $(STAMP) ## The GPU pack for Python 3.12 within its budget and `make gpu-check-dry` (downloads wheels; minutes)
	$(PY) -m pytest -q -rs -m gpu_pack tests/test_gpu_pack.py $(call PYTEST_REPORT,gpu-pack)

## TARGET: what conformance and load test: local (the chart's runtimes on loopback), pods, cluster, URLs
TARGET ?= local
## MARKERS: a pytest -m expression for make conformance, e.g. "v1 or openai"
MARKERS ?=
## CONFORMANCE_ARGS: more pytest arguments for make conformance and conformance-gpu
CONFORMANCE_ARGS ?=
CONFORMANCE = $(PY) -m pytest conformance -p no:cacheprovider -o timeout=900 -rfEs

conformance: $(STAMP) ## Conformance suite against TARGET (MARKERS selects); reports/conformance/
	$(CONFORMANCE) --target "$(TARGET)" $(if $(MARKERS),-m "$(MARKERS)") $(CONFORMANCE_ARGS)

## ATTACK_PENDING: 1 also runs the attack cases whose fix is not in the tree yet (conformance/attack/cases.py)
ATTACK_PENDING ?=
attack: $(STAMP) ## The security review's hostile requests against TARGET, /v2/health/live and RSS watched
	ATTACK_PENDING="$(ATTACK_PENDING)" $(MAKE) conformance TARGET="$(TARGET)" MARKERS=attack

CHART_DIR := charts/kserve-huggingface-runtimes
chart-lint: $(STAMP) ## helm lint --strict (Helm's Go SDK), values-schema checks, hadolint on images/Dockerfile
	$(PY) -m pytest -q tests/chart/test_chart_lint.py tests/chart/test_chart_images.py

chart-test: $(STAMP) ## Chart tests without a cluster: lint, render matrix, model validation, pod emulation
	$(PY) -m pytest -q -rs tests/chart

ACTIONLINT := $(VENV)/bin/actionlint
actionlint: $(STAMP) ## Lint .github/workflows with actionlint (pinned in requirements/dev.txt)
	$(ACTIONLINT) -no-color

##@ Load, benchmarks and soaks

## PEERS: peers make bench and bench-engines run beside ours (infinity)
PEERS ?=
## BENCH_ARGS: more arguments for loadtests.bench (BENCH_ENGINES_ARGS: for loadtests.bench_engines)
BENCH_ARGS ?=
BENCH_ENGINES_ARGS ?=
## BENCH_HEAD_ARGS: arguments for loadtests.bench_head (--runtimes, --rounds, --seconds, --concurrency)
BENCH_HEAD_ARGS ?=
## P99_MS: make load fails above this p99 latency (ms)
P99_MS ?= 5000
## LOAD_DURATION: seconds of make load (LOAD_USERS, LOAD_SHAPE steady|step, LOAD_PROTOCOLS, LOAD_ARGS)
LOAD_DURATION ?= 30
LOAD_USERS ?= 8
LOAD_SHAPE ?= steady
LOAD_PROTOCOLS ?= v1,v2,openai
LOAD_ARGS ?=
## CHAOS_MINUTES: length of make chaos (CHAOS_SEED picks the faults)
CHAOS_MINUTES ?= 5
CHAOS_SEED ?= 6
## RSS_SOAK_ARGS: arguments for make rss-soak (--requests N, NAME=VALUE environment variants)
RSS_SOAK_ARGS ?=
## TIME_TO_READY_ARGS: arguments for make time-to-ready (--runtimes huggingface,triton, --steady N)
TIME_TO_READY_ARGS ?=
## CAPACITY_ARGS: arguments for make capacity (--p99_ms, --concurrency 1,2,4,..., --seconds, --cpu_request)
CAPACITY_ARGS ?=
## AUTOSCALE_SIM_ARGS: arguments for make autoscale-sim (--rps_low/--batch_low/--rps_high/--batch_high, --slo_ms)
AUTOSCALE_SIM_ARGS ?=

bench: $(STAMP) ## Both runtimes and their no-batching twins beside the raw forward, c=1/8/32; reports/bench/
	$(PY) -m loadtests.bench $(if $(PEERS),--peers $(PEERS)) $(BENCH_ARGS)

bench-engines: $(STAMP) ## torch fp32 vs ONNX Runtime fp32 vs ONNX int8, raw and served, in one run; reports/bench/
	$(PY) -m loadtests.bench_engines $(if $(PEERS),--peers $(PEERS)) $(BENCH_ENGINES_ARGS)

bench-head: $(STAMP) ## A Dense head + default prompt vs the plain MiniLM, c=32, both runtimes, same run; reports/bench/
	$(PY) -m loadtests.bench_head $(BENCH_HEAD_ARGS)

load: $(STAMP) ## Locust load run against TARGET (local or http://...), fails above P99_MS; reports/load/
	$(PY) -m loadtests.run --target "$(TARGET)" --p99-ms $(P99_MS) --duration $(LOAD_DURATION) \
	  --users $(LOAD_USERS) --shape $(LOAD_SHAPE) --protocols $(LOAD_PROTOCOLS) $(LOAD_ARGS)

chaos: $(STAMP) ## Fault-injection soak of the Triton runtime pair; reports/chaos/
	$(PY) -m loadtests.chaos --minutes $(CHAOS_MINUTES) --seed $(CHAOS_SEED)

rss-soak: $(STAMP) ## Runtime 1's RSS under mixed-length load, sampled per requests served; reports/rss-soak/
	$(PY) -m loadtests.rss_soak $(RSS_SOAK_ARGS)

capacity: $(STAMP) ## One pod's knee on the mixed corpus (TARGET=http://host:port) and its autoscaling recipe values
	$(PY) -m loadtests.capacity --target "$(TARGET)" $(CAPACITY_ARGS)

autoscale-sim: $(STAMP) ## KPA and HPA restated, per scaling signal: replicas and p99 on a mixed trace; docs/autoscaling.md
	$(PY) -m loadtests.autoscale_sim --plot docs/autoscaling_sim.png --write_docs docs/autoscaling.md $(AUTOSCALE_SIM_ARGS)

time-to-ready: $(STAMP) ## Start -> first 200 per runtime/engine, local vs s3:// (moto), cold/warm cache; reports/time-to-ready/
	$(PY) -m loadtests.time_to_ready $(TIME_TO_READY_ARGS)

##@ GPU machine (loadtests/gpu_check.py: Python 3.12, torch and transformers, no network)

## GPU_WHEELHOUSE: the pack's folder (GPU_WHEELHOUSE_MIB: its budget; GPU_PACK_PRESET: xz preset)
GPU_WHEELHOUSE ?= .gpu-wheelhouse
GPU_WHEELHOUSE_MIB ?= 64
GPU_PACK_PRESET ?= 9
## GPU_PY_VERSION: the GPU machine's Python
GPU_PY_VERSION ?= 3.12
## GPU_PYTHON: gpu-check's interpreter (GPU_CHECK_DEVICE: cuda or cpu; GPU_CHECK_ARGS: more)
GPU_PYTHON ?= python3
GPU_CHECK_DEVICE ?= cuda
GPU_CHECK_ARGS ?=
## GPU_ATOL: float16 tolerance of conformance-gpu (parity, batch vs single)
GPU_ATOL ?= 5e-3
GPU_DRY := build/gpu-check-dry

gpu-info: ## Show the GPU that torch sees (fails without one)
	nvidia-smi
	$(PY) -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; print(torch.cuda.get_device_name(0))"

gpu-wheelhouse: $(STAMP) ## Pack what the GPU check needs beyond torch + transformers into GPU_WHEELHOUSE
	$(PY) -m loadtests.gpu_pack build --out $(GPU_WHEELHOUSE) --python-version $(GPU_PY_VERSION) \
	  --budget-mib $(GPU_WHEELHOUSE_MIB) --preset $(GPU_PACK_PRESET)

gpu-check: ## On the GPU machine: unpack GPU_WHEELHOUSE, both runtimes vs the raw fp16 forward (no venv needed)
	site="$$($(GPU_PYTHON) -m loadtests.gpu_pack unpack --wheelhouse $(GPU_WHEELHOUSE))" && \
	  PYTHONPATH="$$site:$(CURDIR)/serving_code:$(CURDIR)" $(GPU_PYTHON) -m loadtests.gpu_check \
	  --device $(GPU_CHECK_DEVICE) --wheelhouse $(GPU_WHEELHOUSE) $(GPU_CHECK_ARGS)

gpu-check-dry: $(STAMP) ## The GPU check on this CPU as the GPU machine runs it (a venv with only torch + transformers)
	test -f $(GPU_DRY)/venv/.installed || { rm -rf $(GPU_DRY)/venv && $(PYTHON) -m venv $(GPU_DRY)/venv && \
	  $(GPU_DRY)/venv/bin/python -m pip install --quiet torch transformers -c requirements/constraints.txt $(TORCH_INDEX) && \
	  touch $(GPU_DRY)/venv/.installed; }  # the stamp comes last: an interrupted install is redone, not kept
	version="$$($(GPU_DRY)/venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" && \
	  $(MAKE) gpu-wheelhouse GPU_WHEELHOUSE=$(GPU_DRY)/wheelhouse GPU_PY_VERSION=$$version GPU_PACK_PRESET=0 GPU_WHEELHOUSE_MIB=1024
	$(MAKE) gpu-check GPU_PYTHON=$(GPU_DRY)/venv/bin/python GPU_WHEELHOUSE=$(GPU_DRY)/wheelhouse GPU_CHECK_DEVICE=cpu \
	  GPU_CHECK_ARGS="--seconds 1 --out $(GPU_DRY)/report $(GPU_CHECK_ARGS)"

conformance-gpu: $(STAMP) ## Conformance on a GPU machine: the gpu group fails without a GPU; tolerance GPU_ATOL
	$(CONFORMANCE) --target "$(TARGET)" --require-gpu --atol $(GPU_ATOL) $(if $(MARKERS),-m "$(MARKERS)") $(CONFORMANCE_ARGS)

##@ Images and podman pods (images/, docs/images.md)

## IMAGE_PREFIX: registry and path of the images
IMAGE_PREFIX ?= ghcr.io/hfserve
## IMAGE_TAG: the images' tag [the chart's appVersion]
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART_DIR)/Chart.yaml)
## REVISION: the images' revision label [git rev-parse --short HEAD]
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
## CONTAINER_ENGINE: docker or podman [docker when its daemon answers, else podman]
CONTAINER_ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; elif command -v podman >/dev/null 2>&1; then echo podman; elif command -v docker >/dev/null 2>&1; then echo docker; fi)
## IMAGE_BUILD_ARGS: more arguments for every image build
IMAGE_BUILD_ARGS ?=
## IMAGE_BASES: local (local Debian base, images/wheelhouse, no network) or upstream (as the release)
IMAGE_BASES ?= local
## TRITON_BASE: the triton image's base when IMAGE_BASES=upstream
TRITON_BASE ?= nvcr.io/nvidia/tritonserver:26.03-py3
## BASE_IMAGE: the local base's tag [one per recipe of images/base/build-base.sh]
BASE_IMAGE ?= localhost/hfserve-base:bookworm-$(shell cat images/base/build-base.sh | sha256sum | cut -c1-12)
LOCAL_IMAGE_ARGS = --network=none --build-arg BASE=$(BASE_IMAGE) --build-arg PIP_NO_INDEX=1
IMAGE_BUILD = $(if $(filter podman,$(CONTAINER_ENGINE)),$(SUDO))$(CONTAINER_ENGINE) build --build-arg VERSION=$(IMAGE_TAG) --build-arg REVISION=$(REVISION) $(if $(filter local,$(IMAGE_BASES)),$(LOCAL_IMAGE_ARGS)) $(IMAGE_BUILD_ARGS) -f images/Dockerfile
## SUDO: prefix of rootful podman and debootstrap [sudo -E unless make runs as root]
SUDO ?= $(if $(filter 0,$(shell id -u)),,sudo -E )
# podman on sandboxed machines: rlimits and OCI runtime that let containers start (images/podman/containers-conf.sh)
PODMAN_CONF := $(CURDIR)/build/containers.conf
## POD_TEST_ARGS: more pytest arguments for make pod-test
POD_TEST_ARGS ?=

images: $(if $(filter local,$(IMAGE_BASES)),base-image wheelhouse) ## Build the three images (docker or podman), tagged as the chart's defaults
	@test -n "$(CONTAINER_ENGINE)" || { echo "neither docker nor podman found (set CONTAINER_ENGINE)" >&2; exit 1; }
	$(IMAGE_BUILD) --target huggingface -t $(IMAGE_PREFIX)/huggingface-runtime:$(IMAGE_TAG) .
	$(IMAGE_BUILD) --target transformer -t $(IMAGE_PREFIX)/transformer:$(IMAGE_TAG) .
	$(IMAGE_BUILD) --target triton $(if $(filter local,$(IMAGE_BASES)),,--build-arg BASE=$(TRITON_BASE)) -t $(IMAGE_PREFIX)/triton:$(IMAGE_TAG) .

podman-conf:
	@mkdir -p $(dir $(PODMAN_CONF)) && images/podman/containers-conf.sh > $(PODMAN_CONF)

base-image: $(if $(filter podman,$(CONTAINER_ENGINE)),podman-conf) ## Build the local Debian base image (debootstrap + import) once per recipe
	$(SUDO)env CONTAINER_ENGINE=$(CONTAINER_ENGINE) images/base/build-base.sh $(BASE_IMAGE)

wheelhouse: $(STAMP) ## Put every pinned wheel of the images (CPU torch) into images/wheelhouse (cached)
	PY=$(PY) images/fill-wheelhouse.sh

pod-test: CONTAINER_ENGINE := podman
images base-image pod-test: export CONTAINERS_CONF := $(if $(filter podman,$(CONTAINER_ENGINE)),$(PODMAN_CONF),$(CONTAINERS_CONF))
images: $(if $(filter podman,$(CONTAINER_ENGINE)),podman-conf)

pod-test: $(STAMP) images ## Build the images, run both runtimes as podman pods, conformance suite against them
	$(SUDO)$(CONFORMANCE) --target pods --recovery-timeout 420 $(POD_TEST_ARGS)

ci-tools: prometheus-tools ## Install podman, runc and debootstrap from Debian/Ubuntu packages where missing
	.ci/install-container-tools.sh

prometheus-tools: ## Install Debian's prometheus package (prometheus, promtool) where missing; no service is left running
	.ci/install-prometheus.sh

## SMOKE_HUGGINGFACE: kserve-huggingface images make image-smoke starts, space-separated [as make images tags it]
SMOKE_HUGGINGFACE ?= $(IMAGE_PREFIX)/huggingface-runtime:$(IMAGE_TAG)
## SMOKE_TRANSFORMER: the Triton pod's transformer image, empty: no Triton pod (SMOKE_TRITON: its Triton image)
SMOKE_TRANSFORMER ?= $(IMAGE_PREFIX)/transformer:$(IMAGE_TAG)
SMOKE_TRITON ?= $(IMAGE_PREFIX)/triton:$(IMAGE_TAG)
## SMOKE_PULL: 1 pulls the images first (REGISTRY_USER/REGISTRY_PASSWORD log in to their registry)
SMOKE_PULL ?=

image-smoke: CONTAINER_ENGINE := podman
image-smoke: export CONTAINERS_CONF := $(PODMAN_CONF)
image-smoke: $(STAMP) podman-conf ## Start each image with the packaged MiniLM as the chart's pod (podman) and check V1 ready + predict
	$(SUDO)$(PY) -m devkit.image_smoke $(foreach i,$(SMOKE_HUGGINGFACE),--huggingface $(i)) \
	  $(if $(SMOKE_TRANSFORMER),--transformer $(SMOKE_TRANSFORMER) --triton $(SMOKE_TRITON)) $(if $(SMOKE_PULL),--pull)

##@ Cluster (KUBECONFIG's current context)

## KIND_CLUSTER: the kind cluster make kind-load loads into
KIND_CLUSTER ?= hfserve
## KSERVE_VERSION: what make kserve-install installs (CERT_MANAGER_VERSION: its cert-manager)
KSERVE_VERSION ?= v0.21.0
CERT_MANAGER_VERSION ?= v1.17.2
KIND_IMAGES = $(IMAGE_PREFIX)/huggingface-runtime:$(IMAGE_TAG) $(IMAGE_PREFIX)/transformer:$(IMAGE_TAG) $(IMAGE_PREFIX)/triton:$(IMAGE_TAG)

## KSERVE_MODE: the default mode make kserve-install sets: RawDeployment or Serverless
KSERVE_MODE ?= RawDeployment
## KNATIVE_VERSION: the Knative Serving KSERVE_MODE=Serverless installs first, with Kourier (KOURIER_VERSION)
KNATIVE_VERSION ?= 1.21.1
KOURIER_VERSION ?= 1.21.0
KNATIVE_RELEASES = https://github.com/knative

kserve-install: ## Install cert-manager, Knative with Kourier when KSERVE_MODE=Serverless, and KServe KSERVE_VERSION
	kubectl apply -f https://github.com/cert-manager/cert-manager/releases/download/$(CERT_MANAGER_VERSION)/cert-manager.yaml
	kubectl -n cert-manager wait --for=condition=Available deployment --all --timeout=300s
	$(if $(filter Serverless,$(KSERVE_MODE)),$(MAKE) knative-install)
	helm upgrade --install kserve-crd oci://ghcr.io/kserve/charts/kserve-crd --version $(KSERVE_VERSION) \
	  --namespace kserve --create-namespace --wait
	helm upgrade --install kserve oci://ghcr.io/kserve/charts/kserve --version $(KSERVE_VERSION) \
	  --namespace kserve --wait --timeout 10m --set-string kserve.controller.deploymentMode=$(KSERVE_MODE) \
	  --set kserve.controller.gateway.disableIngressCreation=true \
	  $(if $(filter Serverless,$(KSERVE_MODE)),--set kserve.controller.gateway.disableIstioVirtualHost=true)

# Knative Serving and net-kourier from their release manifests; Kourier is the ingress (no Istio). Tags of the
# locally built images (kind-load) cannot be resolved to digests, so Knative skips that for their registry.
knative-install: ## Install Knative Serving KNATIVE_VERSION with Kourier as its ingress into the current kube context
	kubectl apply -f $(KNATIVE_RELEASES)/serving/releases/download/knative-v$(KNATIVE_VERSION)/serving-crds.yaml
	kubectl apply -f $(KNATIVE_RELEASES)/serving/releases/download/knative-v$(KNATIVE_VERSION)/serving-core.yaml
	kubectl apply -f $(KNATIVE_RELEASES)/net-kourier/releases/download/knative-v$(KOURIER_VERSION)/kourier.yaml
	kubectl -n knative-serving patch configmap/config-network --type merge \
	  -p '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
	kubectl -n knative-serving patch configmap/config-deployment --type merge \
	  -p '{"data":{"registries-skipping-tag-resolving":"kind.local,ko.local,dev.local,$(firstword $(subst /, ,$(IMAGE_PREFIX)))"}}'
	kubectl -n knative-serving wait --for=condition=Available deployment --all --timeout=300s
	kubectl -n kourier-system wait --for=condition=Available deployment --all --timeout=300s

kind-load: ## Load the three images `make images` built into the kind cluster KIND_CLUSTER
	for img in $(KIND_IMAGES); do kind load docker-image "$$img" --name $(KIND_CLUSTER); done

cluster-test: $(STAMP) ## Install the chart, apply the examples, query them (fails without a cluster)
	HFSERVE_CLUSTER_TESTS=required $(PY) -m pytest -q -rs tests/chart/test_chart_cluster.py

cluster-debug: ## Print the state of the cluster (InferenceServices, pods, events, container logs)
	-kubectl get inferenceservices,clusterservingruntimes,pods -A -o wide
	-kubectl get events -A --sort-by=.lastTimestamp | tail -n 80
	-for p in $$(kubectl get pods -n hfserve-conformance -o name 2>/dev/null); do \
	  kubectl logs -n hfserve-conformance $$p --all-containers --tail=200; done

##@ Release (.github/workflows/release.yml on a tag vX.Y.Z; the same checks here without pushing)

## RELEASE_TAG: the tag checked against the versions [GITHUB_REF_NAME, else v + the chart's appVersion]
RELEASE_TAG ?= $(or $(GITHUB_REF_NAME),v$(IMAGE_TAG))
## RELEASE_DIR: where helm package writes the chart archive
RELEASE_DIR ?= build/release
RELEASE_CHECK = $(PY) images/release.py check --tag $(RELEASE_TAG)

release-check: $(STAMP) ## RELEASE_TAG, Chart.yaml version/appVersion, pyproject and the chart's images agree
	$(RELEASE_CHECK)

release-dry-run: release-check images ## The release without pushes: version checks, images and their labels, helm package
	$(RELEASE_CHECK) --engine $(CONTAINER_ENGINE)
	$(PY) images/release.py package --out $(RELEASE_DIR)

release-chart: release-check ## Package the chart and helm push it to CHART_OCI (REGISTRY_USER, REGISTRY_PASSWORD)
	$(PY) images/release.py package --out $(RELEASE_DIR)
	$(PY) images/release.py push --out $(RELEASE_DIR)

release-sign: ## cosign keyless signature of IMAGE_REF@IMAGE_DIGEST (the release workflow's OIDC identity)
	cosign sign --yes "$(IMAGE_REF)@$(IMAGE_DIGEST)"
