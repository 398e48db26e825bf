# Two entry points: `make demo` (install + the main job) and `make test` (install + the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
# The exact versions the suite passed with (pip constraints: they pin, never add). `make lock` refreshes it.
LOCK := requirements.lock
PIP := pip==26.3
# torch is locked without a build label: the project machines' local wheel is 2.13.0+cpu; on a CUDA machine
# `make install TORCH=torch` takes PyPI's CUDA build of the same version.
TORCH ?= torch==2.13.0
export WORKBENCH_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test test-fast test-latest lock bench clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(PIP)"
	$(PY) -m pip install --quiet -c $(LOCK) "$(TORCH)"
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job at a small budget: a 2-trial P-tuning sweep on SST-2 (16 shots per class), a 2-trial sweep of
# full fine-tuning at the same budget (equal effort), then both best configs on three seeds with the paired
# difference and its 95% interval. --resume lets a second `make demo` continue (and reuse) the same studies.
DEMO_BUDGET := --trials 2 --max-steps 8 --eval-every 4 --trial-eval-limit 50 --final-seeds 13,21,42 --eval-limit 150
demo: install
	$(VENV)/bin/workbench models pull smollm2-135m
	$(VENV)/bin/workbench sweep --method p-tuning --task sst2 $(DEMO_BUDGET) --resume

# The whole suite: CI and the README run this.
test: install
	$(PY) -m pytest -q -ra

# The unit tier for the development loop: no real model, no subprocess sweeps, no compile.
test-fast: install
	$(PY) -m pytest -q -ra -m "not slow and not heavy"

# The newest versions pyproject.toml's ranges allow, in a venv of their own: drift shows here before users meet
# it. A failure here is a reason to fix the code or bound the range, then `make lock`.
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --quiet "$(PIP)"
	$(LATEST)/bin/python -m pip install --quiet "$(TORCH)"
	$(LATEST)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST)/bin/python -m pip freeze --exclude-editable > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -ra

# Resolve the ranges again (uv, for Linux x86-64 and Python 3.11, the dev and cuda extras) into $(LOCK); then run
# `make test` on it before committing.
TOOLS := .venv-tools
lock:
	test -d $(TOOLS) || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet uv==0.13.9
	$(TOOLS)/bin/uv pip compile pyproject.toml --extra dev --extra cuda --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" --upgrade -o $(LOCK)
	rm -f $(VENV)/.installed

bench: install
	$(PY) benchmarks/bench_verbalizer_head.py

clean:
	rm -rf $(VENV) $(LATEST) $(TOOLS) *.egg-info .pytest_cache
