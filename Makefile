# Quick start: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
# Both create .venv on first use. On a CPU machine torch comes from the local CPU wheel
# (torch==2.13.0); set TORCH="torch" (or a CUDA build's spec) on a GPU machine.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
export MESA_SHADER_CACHE_DISABLE := true

.PHONY: setup demo demo-full report test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The main job: render the face world, train a small DC-IGN and its VAE baseline on CPU,
# evaluate them and write out/demo/report/index.html (about 7 minutes on 2 cores, set-up included).
demo: setup
	$(VENV)/bin/dcign-eval demo --profile quick

# The shipped models rebuilt from recipes/dcign.toml and recipes/vae.toml, side by side (hours on
# a CPU), then the full report.
demo-full: setup
	$(VENV)/bin/dcign-eval demo --profile full

# The report of the shipped models, reports/latest/index.html.
report: setup
	$(VENV)/bin/dcign-eval report

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: setup
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: setup
	$(PY) bench/bench_render.py
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_train.py

clean:
	rm -rf $(VENV) data out .pytest_cache
