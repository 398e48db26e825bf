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

# The main job at a small budget: a 2-trial P-tuning sweep on SST-2 (16 shots per class), a 2-trial sweep of
# full fine-tuning at the same budget (equal effort), then both best configs on three seeds with the paired
# difference and its 95% interval. --resume lets a second `make demo` continue (and reuse) the same studies.
DEMO_BUDGET := --trials 2 --max-steps 8 --eval-every 4 --trial-eval-limit 50 --final-seeds 13,21,42 --eval-limit 150
demo: install
	$(VENV)/bin/workbench models pull smollm2-135m
	$(VENV)/bin/workbench sweep --method p-tuning --task sst2 $(DEMO_BUDGET) --resume

test: install
	$(PY) -m pytest -q -ra

bench: install
	$(PY) benchmarks/bench_verbalizer_head.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
