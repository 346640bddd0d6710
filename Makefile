# Two commands on a fresh clone, nothing installed by hand:
#   make demo   plan and publish the bundled example to a local Back Market emulator
#   make test   the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test bench soak mutants lint clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Kill, change, publish, repeat for SOAK_MINUTES (10 by default); prints duplicates, lost
# updates and wrong zeros, which must all be 0.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

# The mutation gate: every invariant mutant of bench/mutants.toml must be killed by its tests
# (prints killed/survived per mutant and the wall time; not part of `make test`).
mutants: $(STAMP)
	$(BIN)/python bench/mutants.py

lint: $(STAMP)
	$(BIN)/ruff check syncer tests examples bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
