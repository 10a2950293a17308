# Two commands on a fresh machine:  `make quickstart`  and  `make test`.
PYTHON ?= python3
STAMP := .sslc-installed

.PHONY: install quickstart test

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	sslc run recipes/quickstart.yaml

# the test suite, each built-in plugin alone, the example plugin, ruff, mypy, docs
test: $(STAMP)
	nox
