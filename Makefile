# Two commands matter: `make demo` and `make test`. Both bootstrap everything they need
# (uv in a local virtualenv if it is missing, then the locked dependencies) on a machine
# that has nothing but Python 3.11+.
PYTHON ?= python3
BOOTSTRAP := .bootstrap
UV := $(shell command -v uv 2>/dev/null || echo $(BOOTSTRAP)/bin/uv)
RUN := $(UV) run --frozen --no-python-downloads --python $(PYTHON)
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo test lint typecheck pytest bench sync fmt clean mcpb dist image regenerate

demo: sync
	$(RUN) python scripts/demo.py

test: lint typecheck pytest

# After adding or changing a tool (its module and its line in tools.ALL), this one command rewrites what is derived
# from the tools and the version: tests/contracts/*.json, mcpb/manifest.json's tool list, server.json's versions,
# the README's tool-list size rows.
# Review the diff. `CHECK=--check make regenerate` changes nothing and fails when one is out of date.
regenerate: sync
	$(RUN) python scripts/regenerate.py $(CHECK)

# Claude Desktop bundle (flashsnap-mcp.mcpb), packed with the official MCPB CLI from npm.
mcpb: sync
	$(RUN) python scripts/build_mcpb.py

# Wheel and sdist in dist/, for `uvx --from dist/flashsnap_mcp-*.whl flashsnap-mcp` or an index.
dist: sync
	$(UV) build --no-python-downloads --python $(PYTHON) -o dist

# The OCI image, built with podman and smoke-tested through real containers; leaves localhost/flashsnap-mcp:dev.
# Needs root on Debian (it installs podman); elsewhere it says why and skips. See scripts/image.sh.
image:
	bash scripts/image.sh

lint: sync
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	$(RUN) python scripts/check_docstrings.py
	$(RUN) python scripts/check_complexity.py

typecheck: sync
	$(RUN) mypy

# Two test workers (pytest-xdist): the suite waits on subprocesses, sockets and Node much of the time, so a second
# worker fills a 2-core machine. `PYTEST_WORKERS=0 make pytest` runs it in one process.
PYTEST_WORKERS ?= 2

pytest: sync
	$(RUN) pytest -n $(PYTEST_WORKERS)

bench: sync
	$(RUN) --group bench python -m bench $(BENCH)

fmt: sync
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

sync: $(UV)
	$(UV) sync --frozen --no-python-downloads --python $(PYTHON) --quiet

$(BOOTSTRAP)/bin/uv:
	$(PYTHON) -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/python -m pip install --quiet --disable-pip-version-check uv

clean:
	rm -rf .venv $(BOOTSTRAP) .mypy_cache .ruff_cache .import_linter_cache dist flashsnap-mcp.mcpb
