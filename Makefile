# Set-up and entry points. `make venv` is idempotent; `make demo` and `make test`
# both build on it, so a fresh clone needs nothing installed by hand. The
# bench/*.py scripts are run one at a time, each with the flags its docstring gives.
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: venv demo test lint clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: venv
	$(BIN)/snakemake --cores 2
	$(BIN)/snakemake --report results/report.html

test: venv
	$(BIN)/python -m pytest -q tests

lint: venv
	$(BIN)/ruff check lib workflow tests bench
	$(BIN)/ruff format --check lib workflow tests bench
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

clean:
	rm -rf results logs resources .snakemake
