# `make demo` and `make test` work on a fresh clone: they build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SANDBOX_LISTEN ?= 127.0.0.1:8765

.PHONY: demo test lint format status-schema bench bench-storage bench-scale bench-startup profile \
	bench-cluster chaos clean system-deps

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "intmon needs Python >= 3.11 ($(PYTHON) is older)"; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@./scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check monitor checks tests benchmarks
	$(BIN)/ruff format --check monitor checks tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format monitor checks tests benchmarks
	$(BIN)/ruff check --fix monitor checks tests benchmarks

# The published JSON Schema of /api/status: rewrite it after changing monitor/engine/status.py
# or the models it uses (tests/test_status_api.py fails until then).
status-schema: $(STAMP)
	$(BIN)/python -c 'from monitor.engine.status import schema_json; print(schema_json(), end="")' \
		> docs/status.schema.json

# intmon against Prometheus + blackbox_exporter probing the same nginx at the same rate, then
# the scale figures (2,000 checks: /metrics, /api/status, the page): one run, both tables.
bench: $(STAMP) system-deps
	$(BIN)/python benchmarks/probe.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/scale.py $(SCALE_ARGS)

# Where intmon's CPU goes at 500 checks/s: py-spy over the measured period, summarised, and
# the raw profile in $(PROFILE) (py-spy's own tools read it; e.g. flamegraph.pl).
PROFILE ?= intmon-profile.txt
profile: $(STAMP) system-deps
	$(BIN)/python -m pip install --quiet py-spy
	$(BIN)/python benchmarks/probe.py --sides intmon --profile $(PROFILE) \
		--py-spy $(BIN)/py-spy $(BENCH_ARGS)

# `intmon validate` on 1,000, 10,000 and 100,000 checks: time, peak RSS, cost per check.
bench-startup: $(STAMP)
	$(BIN)/python benchmarks/startup.py $(BENCH_ARGS)

# 30 days of 1,000 checks at 60 s: database size and query times against the named baseline.
bench-storage: $(STAMP)
	$(BIN)/python benchmarks/storage.py

# 2,000 checks against the sandbox: /metrics, /api/status and the status page, size and time.
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py $(BENCH_ARGS)

# The sandbox API plus the daemon watching it; Ctrl-C stops both. Each demo starts from a fresh
# database, so what it shows is what this run saw (DEMO_KEEP=1 keeps the last run's history).
demo: $(STAMP)
	@mkdir -p .demo
	@$(BIN)/intmon validate --config config/demo.yaml
	@if [ -z "$(DEMO_KEEP)" ]; then rm -f .demo/demo.db .demo/demo.db-wal .demo/demo.db-shm; fi
	@$(BIN)/intmon sandbox --listen $(SANDBOX_LISTEN) > .demo/sandbox.log 2>&1 & \
	 sandbox=$$!; trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	 echo ""; \
	 echo "intmon demo: the sandbox API is on http://$(SANDBOX_LISTEN)/ and the daemon is starting."; \
	 echo "  status page:  http://127.0.0.1:9464/"; \
	 echo "  inbox:        http://$(SANDBOX_LISTEN)/notifications   (the alerts intmon sent)"; \
	 echo "  metrics:      http://127.0.0.1:9464/metrics"; \
	 echo "  API:          http://127.0.0.1:9464/api/status"; \
	 echo "  CLI:          $(BIN)/intmon status --config config/demo.yaml   (in another terminal)"; \
	 echo "  database:     .demo/demo.db, $(if $(DEMO_KEEP),kept from the last run,fresh: make demo DEMO_KEEP=1 keeps history)"; \
	 echo "  stop:         Ctrl-C"; \
	 echo ""; \
	 $(BIN)/intmon run --config config/demo.yaml

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache *.egg-info

# The fault-injection suite (kill -9, notifier outage, hostile targets, config fuzz, canary):
# about 4 minutes, prints figures, exits 1 when a guarantee of README's Guarantees section breaks.
chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py $(CHAOS_ARGS)

# 3 replicas x 1,000 checks at 5 s on a throwaway Postgres: per-replica CPU, Postgres write
# load, runs stored per slot, takeover after a kill -9; BENCH_ARGS="--faults" restarts and
# stops Postgres instead. Exits 1 when a cluster guarantee breaks.
bench-cluster: $(STAMP) system-deps
	$(BIN)/python benchmarks/cluster.py $(BENCH_ARGS)
