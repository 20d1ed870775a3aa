# The README's two commands:  `make demo` (set up + the main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test data clean

# torch==2.13.0 first. PyPI's torch is the multi-GB CUDA build, so on a machine without an NVIDIA
# GPU (no nvidia-smi) pip also looks in PyTorch's CPU wheel index, whose 2.13.0+cpu it prefers
# (a local version sorts above PyPI's 2.13.0). Where that index cannot be reached, pip warns and
# takes PyPI's build: slower to download, the same torch. Choose yourself with TORCH_INDEX, e.g.
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cu130    (a CUDA build)
#   make demo TORCH_INDEX=                                           (whatever pip's default index has)
TORCH_INDEX ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || echo https://download.pytorch.org/whl/cpu)
TORCH_FROM  := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX) --timeout 20 --retries 1,)

# make demo installs what the main job needs; make test adds the test extras (parity references,
# the web server's and the exporter's packages, notebook and browser drivers).
$(VENV)/.torch: Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0 $(TORCH_FROM)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

data: setup
	bash scripts/ensure-data.sh $(BIN)/fmbench

demo: data
	$(BIN)/fmbench run

# The tests find the real data as users do (FMBENCH_DATA_DIR, the cache, Debian's directory), so
# `make test` gets it first, exactly as `make demo` does.
test: data $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) fmbench-study
