# Two entry points: `make demo` (install + the main job) and `make test` (install + the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel on the project machines; on a CUDA machine: make TORCH="torch" (or your CUDA build).
TORCH ?= torch==2.13.0
export WORKBENCH_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/workbench models pull smollm2-135m
	$(VENV)/bin/workbench train --method prompt-finetune --task sst2 --shots 16 --seed 13

test: install
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/bench_verbalizer_head.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
