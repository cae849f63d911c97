# Two commands do everything on a fresh clone (Python 3.11 is the only prerequisite):
#   make demo   the sync against the built-in sandboxes
#   make test   the gates (ruff, mypy), then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
UV_VERSION := 0.13.9
ENV := source bin/env.sh &&

.PHONY: venv lint test test-alternatives test-distributed demo sandbox bench soak clean airflow ui-check lock

# `make venv EXTRAS=distributed` adds what a several-machine deployment runs (Celery executor, PostgreSQL
# metadata DB: requirements-distributed.txt) to the checkout's venv; `make test-distributed` does so itself.
EXTRAS ?=
venv: $(VENV)/.installed $(if $(filter distributed,$(EXTRAS)),$(VENV)/.installed-distributed)

# uv installs the ~195 pinned wheels in seconds where pip takes minutes; pip is the fallback. A worker needs only
# requirements.txt; this checkout's venv also runs the sandboxes, the tests and the gates (requirements-dev.txt).
# The packages' bytecode is compiled at install (uv does not by default): otherwise every task process compiles
# Airflow, pandas and GX from source again, since PYTHONDONTWRITEBYTECODE (set in some environments) keeps Python
# from caching it (README "Start-up"). uv compiles only when it installs something, so compileall covers a venv
# uv found complete and the pip fallback; over compiled files it only compares timestamps.
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) \
	  && $(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -r requirements-dev.txt \
	  || $(VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib
	$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python --no-deps -e . \
	  || $(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

# The same pins as requirements-dev.txt plus the Celery and Postgres packages; the override keeps the worker's own
# packaging pin against kombu's over-tight one (see requirements-distributed.overrides). pip installs the full
# resolution as it stands (--no-deps), since it has no overrides.
$(VENV)/.installed-distributed: $(VENV)/.installed requirements-distributed.txt requirements-distributed.overrides
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(VENV)/bin/python -r requirements-distributed.txt \
	    --override requirements-distributed.overrides \
	  || $(VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-distributed.txt
	$(VENV)/bin/python -m compileall -q -j 0 $(VENV)/lib
	touch $@

# The gates, configured in pyproject.toml: ruff over the whole checkout, mypy over the files its config names.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: lint
	$(ENV) $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The integration and DAG tests once per reading of each detail the Thrive vendor pages leave open (the defaults
# are startrow_base=0, fault_shape=aapi, grids=extended, upload_status=complete, compression=on-request,
# subscriber_results=false; `make test` covers those). The unit tests use no emulator. One line per alternative.
THRIVE_ALTERNATIVES ?= grids=documented startrow_base=1 fault_shape=service fault_shape=faultcode \
  upload_status=processed compression=never subscriber_results=true
test-alternatives: venv
	@$(ENV) failed=0; for alternative in $(THRIVE_ALTERNATIVES); do \
	  log="$${TMPDIR:-/tmp}/imis-thrive-tests-$$alternative.log"; \
	  $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/integration tests/dags \
	    --thrive-alternatives=$$alternative $(PYTEST_ARGS) > "$$log" 2>&1 || failed=1; \
	  printf '%-26s %s  (log: %s)\n' "$$alternative" "$$(tail -n 1 "$$log")" "$$log"; \
	done; exit $$failed

# The deployment of README "Running on several machines", for real: a throwaway PostgreSQL database and Redis db,
# the sandboxes and an S3 server, api-server, scheduler, dag-processor and two Celery workers, the three DAGs run
# through the REST API, then worker and task kills. Needs PostgreSQL and Redis (PG_URL, REDIS_URL; default local).
test-distributed: venv
	$(MAKE) -s venv EXTRAS=distributed
	$(ENV) $(VENV)/bin/python -m pytest tests/distributed --run-distributed $(PYTEST_ARGS)

demo: venv
	$(ENV) bin/prepare-airflow-home && $(VENV)/bin/python -m sandbox.demo

sandbox: venv
	$(ENV) $(VENV)/bin/python -m sandbox

bench: venv
	$(ENV) for script in bench/bench_*.py; do $(VENV)/bin/python $$script || exit 1; done

# The three DAGs over many seeds with faults, token purges and SIGKILLs, each against a fault-free reference.
SOAK_SEEDS ?= 20
soak: venv
	$(ENV) $(VENV)/bin/python bench/soak.py --seeds $(SOAK_SEEDS)

# A real Airflow (standalone: scheduler, UI, LocalExecutor, SQLite) on the sandboxes; Ctrl-C stops all.
airflow: venv
	bin/airflow-local

# Clicks through the UI of `make airflow` (started if none runs) in headless Chromium, installed when missing.
ui-check: venv
	command -v chromium >/dev/null || { sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; }
	bin/ui-check

# Re-resolve the pin files together: the worker's and the distributed worker's pins are constrained by the dev
# ones, so none differs.
lock: venv
	$(VENV)/bin/uv pip compile -q requirements-dev.in -o requirements-dev.txt --python-version 3.11
	$(VENV)/bin/uv pip compile -q requirements.in -c requirements-dev.txt -o requirements.txt --python-version 3.11
	$(VENV)/bin/uv pip compile -q requirements-distributed.in -c requirements-dev.txt \
	  --override requirements-distributed.overrides -o requirements-distributed.txt --python-version 3.11

clean:
	rm -rf $(VENV) .airflow .data
