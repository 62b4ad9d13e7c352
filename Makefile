# Two commands for a fresh machine (see README): `make serve` and `make test`.
# Both install what they need first (scripts/bootstrap.sh is idempotent and quick when done).
VENV ?= .venv
ARGS ?=
PYTEST_ARGS ?=

.PHONY: serve test venv system-deps lint

venv:
	@bash scripts/bootstrap.sh venv

system-deps:
	@bash scripts/bootstrap.sh system

## Install what is needed, then run the service on the embedded store with the demo directory.
serve: venv
	$(VENV)/bin/tongxin serve $(ARGS)

## Install system parts and test dependencies, then run every test (lint and types included).
test: system-deps venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -ra $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
