# Quick start: `make demo` (set up, run the main job) and `make test` (set up, run the tests).
# Both create .venv on first use. On a CPU machine torch comes from the local CPU wheel
# (torch==2.13.0); set TORCH="torch" (or a CUDA build's spec) on a GPU machine.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
export MESA_SHADER_CACHE_DISABLE := true

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The main job. Until the trainer and report land it renders a preview of the face world.
demo: setup
	$(VENV)/bin/dcign-eval render grid --out data/grid --identities 6 --preview out/face-world.png
	$(VENV)/bin/dcign-eval render monovariant --out data/monovariant-quick \
		--train-batches 50 --test-batches 10 --train-identities 100 --test-identities 20
	@echo "face world preview: out/face-world.png"

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: setup
	$(PY) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: setup
	$(PY) bench/bench_render.py

clean:
	rm -rf $(VENV) data out .pytest_cache
