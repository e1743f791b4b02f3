# trialbridge: every target installs what it needs from the project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install system-packages test lint demo bench soak hapi hapi-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Debian packages some tests need (chromium, PostgreSQL server binaries); root installs what is missing.
system-packages:
	bash scripts/system-packages.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Every check runs, then the target fails if any of them failed (config of each in pyproject.toml).
lint: install
	@status=0; \
	echo "ruff check ."; $(VENV)/bin/ruff check . || status=1; \
	echo "lint-imports"; $(VENV)/bin/lint-imports --no-logo || status=1; \
	echo "mypy"; $(VENV)/bin/mypy || status=1; \
	exit $$status

demo: install
	$(PY) -m adapter.demo

bench: install hapi
	$(PY) -m bench

# The long fault runs (tests/integration/test_faults.py, test_sync_faults.py): 10,000 resources pushed
# and six studies synced through the fault proxy; then the service fuzzing with 1000 examples per operation
# and mode (tests/integration/test_fuzz_service.py); 200 slow clients for 2 minutes against /health
# (tests/integration/test_slow_clients.py); JSON reports in out/faults/.
soak: install
	mkdir -p out/faults
	TRIALBRIDGE_SOAK=1 TRIALBRIDGE_FAULT_REPORT=out/faults/push.json \
	TRIALBRIDGE_SYNC_FAULT_REPORT=out/faults/sync.json \
	$(PY) -m pytest -rP --show-capture=stdout tests/integration/test_faults.py \
	tests/integration/test_sync_faults.py tests/integration/test_sync_workers.py $(PYTEST_ARGS)
	TRIALBRIDGE_SOAK=1 $(PY) -m pytest -rP --show-capture=stdout tests/integration/test_slow_clients.py $(PYTEST_ARGS)
	TRIALBRIDGE_FUZZ_EXAMPLES=1000 TRIALBRIDGE_FUZZ_REPORT=out/faults/fuzz.json \
	$(PY) -m pytest -rP --show-capture=stdout tests/integration/test_fuzz_service.py $(PYTEST_ARGS)

hapi:
	@$(PYTHON) hapi/hapi.py start

hapi-stop:
	@$(PYTHON) hapi/hapi.py stop

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
