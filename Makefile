# dwlrec — set-up and everyday commands. `make demo` and `make test` install what they need.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip
# CPU machines: torch 2.13.0's CPU wheel (avoids the multi-GB CUDA build). GPU machines:
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS      ?= dev

.PHONY: install demo test test-all lint spark-test cluster-test docker-test clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || \
	  $(PIP) install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)" || \
	  $(PIP) install --index-url https://download.pytorch.org/whl/cpu torch
	$(PIP) install -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/dwlrec run --local

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check components pipelines tests benchmarks
	$(VENV)/bin/ruff format --check components pipelines tests benchmarks
	$(VENV)/bin/mypy

# the spark ingest engine in local[2] (pyspark from the spark extra; Java 17)
spark-test: install
	$(PIP) install -q -e ".[$(EXTRAS),spark]"
	$(PY) -m pytest -q -m spark

# multi-node training simulated on this machine: torchrun nodes, the TrainJob launcher on a fake API
cluster-test: install
	$(PY) -m pytest -q -m cluster

docker-test: install
	bash .ci/docker

clean:
	rm -rf $(VENV) local_outputs out .pytest_cache
