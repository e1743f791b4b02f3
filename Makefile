# trialbridge: every target installs what it needs from the project's own files.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench hapi hapi-stop clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(PY) -m adapter.demo

bench: install
	$(PY) -m bench

hapi:
	@$(PYTHON) hapi/hapi.py start

hapi-stop:
	@$(PYTHON) hapi/hapi.py stop

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
