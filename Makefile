# The README's two commands:  `make demo` (set up + the main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test data clean

# torch==2.13.0 first: a bare `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

data: setup
	bash scripts/ensure-data.sh $(BIN)/fmbench

demo: data
	$(BIN)/fmbench run

# The tests find the real data as users do (FMBENCH_DATA_DIR, the cache, Debian's directory), so
# `make test` gets it first, exactly as `make demo` does.
test: data
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) fmbench-study
