# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

.PHONY: setup demo test lint unit e2e bench controlplane clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

controlplane: setup  ## build (once, cached outside the repo) the Kubernetes control plane and etcd
	$(BIN)/hearth dev build

demo: controlplane  ## the local demo on a real control plane
	$(BIN)/hearth dev demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -m "not e2e"

e2e: controlplane
	$(BIN)/pytest -m e2e

test: lint controlplane  ## everything CI runs: lint, types, and every test tier
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/admission.py

clean:
	-$(BIN)/hearth dev down
	rm -rf $(VENV)
