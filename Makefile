# Two commands on a fresh machine:  `make quickstart`  and  `make test`.
#
# Inside an active virtual environment (or conda env) everything installs there.
# Otherwise (e.g. Debian/Ubuntu's system Python, which refuses `pip install`: PEP 668)
# the Makefile creates .venv/ and runs everything from it.
PYTHON ?= python3
IN_ENV := $(shell $(PYTHON) -c 'import os, sys; print(int(sys.prefix != sys.base_prefix or "CONDA_PREFIX" in os.environ))')
ifeq ($(IN_ENV),1)
  PY := $(PYTHON)
else
  VENV := .venv
  PY := $(VENV)/bin/python
  export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
  export VIRTUAL_ENV := $(CURDIR)/$(VENV)
endif
STAMP := .sslc-installed

.PHONY: install quickstart test

$(STAMP): pyproject.toml
ifneq ($(IN_ENV),1)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
endif
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	sslc run recipes/quickstart.yaml

# the test suite, each built-in plugin alone, the example plugin, ruff, mypy, docs
test: $(STAMP)
	nox
