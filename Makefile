# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

# Debian packages the local cluster's nodes (runc, CNI plugins, iptables), the image builder (mmdebstrap,
# umoci) and the llama.cpp engine's compile (cmake, g++) need; installed with apt-get when missing (the
# nodes run containers: root).
HOST_PACKAGES := runc containernetworking-plugins iptables mmdebstrap umoci cmake g++

# mypy's cache outside the checkout, with the control plane's: a fresh clone type-checks in a second
# instead of half a minute (mypy compares each file's hash with the cache's, so a changed file is checked).
export MYPY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/hearth/mypy

.PHONY: setup host demo test lint check process unit e2e docs bench controlplane image clean

# uv (from PyPI, into the venv) installs the rest from its cache: 16 s from a fresh clone instead of 80 s with pip.
# Byte-compiled at install (uv does not by default, pip does): where PYTHONDONTWRITEBYTECODE is set, as on
# CI machines, nothing else ever writes the byte code, and every process the tests start would compile
# pydantic, FastAPI, httpx and the kubernetes client from source again (about 0.4 s of CPU each).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Hearth's own modules too (an editable install leaves them in the checkout): up-to-date files are skipped,
# so this costs a fraction of a second once done, and a file edited since is compiled again.
PY_PACKAGES := hearth common policies webhook certs scaler gateway devcluster nodecache tests bench docs charts
setup: $(STAMP)
	@$(BIN)/python -m compileall -q -j0 $(PY_PACKAGES)

host:  ## the Debian packages above, when missing
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

controlplane: setup host  ## build (once, cached outside the repo) the control plane, the nodes and Hearth's image
	$(BIN)/hearth dev build

image: setup host  ## Hearth's container image, built without a daemon (an OCI archive in ~/.cache/hearth/image)
	$(BIN)/hearth dev image

demo: controlplane  ## the local demo on a real control plane
	$(BIN)/hearth dev demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy docs/generate.py
	$(BIN)/lint-imports

# The test tiers (tests/conftest.py enforces them): each stops `make test` at its first failure.
check: lint docs  ## lint, types, import contracts, the docs build and the in-process tests: no Go, kubectl or subprocess
	$(BIN)/pytest -m "not e2e and not process" -n 2 --durations=5

# Four workers, work-stealing: the tier waits on its processes (43 % of the CPU idle with two workers), so
# four finish in 64-70 s where two take 92-95 s and three 91 s (six: 83 s, the cores saturated).
process: setup  ## tests that start real processes (Hearth's, Go tools, kubectl), four at a time
	$(BIN)/pytest -m process -n 4 --dist worksteal --durations=10

unit: check process

# Three workers, each with a cluster of its own, a test file at a time, the longest files first
# (tests/e2e/conftest.py): 536 s here where two took 626-665 s (a third of the CPU idle) and one about 23
# min (E2E_WORKERS=1). Before the pods' processes got lighter, three saturated the cores (712 s) and tests
# that compared timings failed; those now check outcomes, and the chaos soak, the longest file, sets the floor.
E2E_WORKERS ?= 3
e2e: controlplane  ## the local cluster (built once, cached), then every end-to-end test on it
	$(BIN)/pytest -m e2e $(if $(filter-out 1,$(E2E_WORKERS)),-n $(E2E_WORKERS) --dist loadfile --no-loadscope-reorder) --durations=20

docs: setup  ## the documentation site, strict: a broken link or a page left out of the nav fails
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

test: check process e2e  ## everything CI runs, fastest tier first

bench: setup
	$(BIN)/python bench/admission.py

clean:
	-$(BIN)/hearth dev down
	rm -rf $(VENV)
