# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)

# Debian packages the local cluster's nodes (runc, CNI plugins, iptables) and the image builder
# (mmdebstrap, umoci) need; installed with apt-get when missing (the nodes run containers: root).
HOST_PACKAGES := runc containernetworking-plugins iptables mmdebstrap umoci

.PHONY: setup host demo test lint unit e2e bench controlplane image clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

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
