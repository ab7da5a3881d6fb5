# The two Quick start commands: `make up` (a 50-node devstack) and `make test`.
# Both install what they need first: a venv with the project, the Docker daemon
# and the local busybox base image (.ci/setup-docker).

VENV  ?= .venv
NODES ?= 50
PYTEST_ARGS ?=

.PHONY: install up down test lint oracle

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# compat: a plain path in a .pth, not an import hook (that one costs every
	# `devstack` verb ~12 ms of its 100 ms budget at start).
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[test]'
	touch $@

install: $(VENV)/.installed
	bash .ci/setup-docker

up: install
	$(VENV)/bin/devstack up --nodes $(NODES)

down:
	$(VENV)/bin/devstack down

# The reference JS UnixFS importer the DAG builder's CIDs are checked against (tests/oracle).
ORACLE := tests/oracle/node_modules/.installed

$(ORACLE): tests/oracle/package.json tests/oracle/package-lock.json
	npm ci --prefix tests/oracle --no-audit --no-fund
	touch $@

oracle: $(ORACLE)

test: install oracle
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
