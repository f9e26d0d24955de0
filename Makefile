# Everything runs in .venv, created on first use from $(PYTHON) (3.11 or newer).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Worker processes re-import inorder when they start; without bytecode caching every
# start recompiles it (3-6x slower start-up, see docs/design.md).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo docs python-inventory test test-loaded bench soak chaos lint typecheck format clean redis-server

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(f"inorder needs Python 3.11 or newer; $(PYTHON) is {v.major}.{v.minor}. Run: make PYTHON=python3.11 ...") if v < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,lint]"
	@touch $@

## demo: stream the bundled sample texts through worker processes (word-count ETL),
## as a script and as a one-line `inorder map` command
demo: $(VENV)/.installed-runtime
	$(BIN)/python examples/wordcount.py
	ls examples/data/*.txt | $(BIN)/inorder map examples/wordcount.py:top_words_of_file

$(VENV)/.installed-nox: | $(BIN)/python
	$(BIN)/python -m pip install --quiet "nox>=2024.4"
	@touch $@

# The Pythons pyenv has (where it is installed), made visible to nox: with PYENV_VERSION
# naming them, pyenv's python3.12 and python3.13 run. Empty without pyenv: nox then
# finds the Pythons on PATH.
PYENV_PYTHONS := $(shell command -v pyenv >/dev/null 2>&1 && pyenv versions --bare --skip-aliases | grep -E '^3\.1[1-3]\.[0-9]+$$' | paste -sd: -)

## test: lint, format check and mypy --strict once, the docs build, then the test suite
## on Python 3.11, 3.12 and 3.13 (nox; see noxfile.py: `.venv/bin/nox -s tests-3.12` runs one)
test: $(VENV)/.installed-nox redis-server python-inventory
	$(if $(PYENV_PYTHONS),PYENV_VERSION=$(PYENV_PYTHONS)) $(BIN)/nox

# $(call debian,CHECK,PACKAGE,PURPOSE): when the shell test CHECK fails, install Debian's
# PACKAGE with apt-get (as root), saying it is for PURPOSE; elsewhere, ask for it.
define debian
	@$(1) >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's $(2) for $(3)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(3) need Debian's $(2) (apt-get install $(2)) or your system's equivalent" >&2; exit 1; \
	  fi; }
endef

# The Redis tests start a redis-server of their own on 127.0.0.1.
redis-server:
	$(call debian,command -v redis-server,redis-server,the Redis tests)

## docs: the documentation site, into docs/_build/html (Sphinx; warnings are errors)
docs: $(VENV)/.installed-nox python-inventory
	$(if $(PYENV_PYTHONS),PYENV_VERSION=$(PYENV_PYTHONS)) $(BIN)/nox -s docs

# Python's Sphinx inventory, for the docs' links into the standard library: the build
# has no network to fetch it.
python-inventory:
	$(call debian,ls /usr/share/doc/python3.*/html/objects.inv,python3-doc,the docs' links to Python)

## test-loaded: the test suite while busy loops hold every CPU (it must pass on a loaded machine)
test-loaded: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks under_load -- $(BIN)/python -m pytest

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	@touch $@

## bench: inorder against its peers on every workload; writes docs/performance.md (~40 min)
bench: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks suite

## soak: 100k items with 1 % faults of every kind, retries off and on, with a timeout and without (~3 min, not in CI)
soak: $(VENV)/.installed-runtime
	$(BIN)/python -m benchmarks soak
	$(BIN)/python -m benchmarks soak --no-timeout

## chaos: 50,000 items while a random worker is SIGKILLed every 50-200 ms, retries off and on, asyncio and trio (~4 min, not in CI)
chaos: $(VENV)/.installed-bench
	$(BIN)/python -m benchmarks chaos

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests examples benchmarks noxfile.py docs/conf.py
	$(BIN)/ruff format --check src tests examples benchmarks noxfile.py docs/conf.py

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

format: $(VENV)/.installed-test
	$(BIN)/ruff format src tests examples benchmarks noxfile.py docs/conf.py
	$(BIN)/ruff check --fix src tests examples benchmarks noxfile.py docs/conf.py

clean:
	rm -rf $(VENV) .nox .pytest_cache .mypy_cache .ruff_cache .hypothesis examples/output
