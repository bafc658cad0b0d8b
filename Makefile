# Newcomer entry points. Each target sets everything up first (idempotent).
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: setup test demo check-config clean

setup:
	bash scripts/bootstrap.sh

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python -m postveil.harness.demo

check-config: setup
	$(VENV)/bin/postveil check-config conf/postveil.yaml

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build src/*.egg-info src/postveil/detection/*.so
