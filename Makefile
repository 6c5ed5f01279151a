# Everything installs itself on a fresh machine: `make demo` and `make test` need nothing beforehand.
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build is the default here; pick your own torch build before `make install` on a GPU machine.
TORCH ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1

.PHONY: install demo test test-slow lint bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, so that no dependency pulls a multi-GB CUDA build
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/promptloop demo --out runs/demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/env_overhead.py

clean:
	rm -rf $(VENV) runs build *.egg-info
