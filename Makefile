# keyledger: `make run` serves, `make test` tests. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NODE_STAMP := clients/typescript/node_modules/.installed
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs

.PHONY: install system-packages bench-packages browser run test test-unit test-integration test-e2e typecheck docs bench chaos stack-up stack-down clean

CLIENT := clients/python

$(STAMP): pyproject.toml $(CLIENT)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "keyledger needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e $(CLIENT)
	@mkdir -p $(VENV)/mypy-path/keyledger
	@for d in domain projections services; do ln -sfn ../../../$$d $(VENV)/mypy-path/keyledger/$$d; done
	@touch $(STAMP)

install: $(STAMP) system-packages browser $(NODE_STAMP)

# npm packages of the TypeScript client check (tests/e2e/test_openapi_codegen.py), when npm is there.
$(NODE_STAMP): clients/typescript/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix clients/typescript --no-audit --no-fund --silent && touch $@ || \
		echo "npm ci failed in clients/typescript: the TypeScript client check will skip"; \
	else echo "npm is not installed: the TypeScript client check will skip"; fi

# $(call debian-package,PACKAGE,what it is for,what happens without it): install the Debian PACKAGE unless its
# command is there, when we are root with apt-get (as on CI); otherwise say what goes without it.
define debian-package
command -v $(1) >/dev/null 2>&1 || test -x /usr/sbin/$(1) || { \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(1) (Debian) for $(2)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 $(1) >/dev/null 2>&1 || \
		{ apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 $(1) >/dev/null; } || \
		echo "could not install $(1): $(3)"; \
	else echo "$(1) is not installed (needs root and apt-get): $(3)"; fi; }
endef

# Debian packages some tests need (nginx and caddy: forward-auth through a real gateway). Installed when we are
# root with apt-get (as on CI); otherwise those tests skip, saying why (and fail under CI=true).
system-packages:
	@$(call debian-package,nginx,the forward-auth tests,the forward-auth gateway tests will skip)
	@$(call debian-package,caddy,the forward-auth tests,the Caddy forward-auth tests will skip)

# The dashboard's browser tests drive Debian's chromium (never a downloaded browser): installed here when we
# are root with apt-get, as on CI; elsewhere those tests are skipped with a one-line reason (a failure on CI).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium (Debian package) for the dashboard's browser tests"; \
	    { apt-get update -qq -o DPkg::Lock::Timeout=300 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends \
	      chromium >/dev/null; } || echo "Could not install chromium: the browser tests will be skipped"; \
	  else echo "chromium is not installed (root and apt-get can install it): the browser tests will be skipped"; fi; }

run: $(STAMP)
	@echo "Starting keyledger: embedded Postgres + NATS (data in .keyledger/), relay, projector and"
	@echo "the HTTP API on http://127.0.0.1:$${PORT:-8080} (PORT overrides). On the first start it prints"
	@echo "a bootstrap admin key once. Ctrl-C stops the API; 'make stack-down' stops Postgres and NATS."
	$(BIN)/keyledger serve

typecheck: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m mypy --strict $(CLIENT)/keyledger_client $(CLIENT)/tests examples

# The whole suite: lint, import contracts (.importlinter), types, the docs site, then every layer. PYTEST_ARGS
# passes options, e.g. PYTEST_ARGS=-x. Its tests run in PYTEST_PARALLEL: two pytest processes (pytest-xdist), each
# with its own embedded Postgres and NATS, a whole test file to one of them (module servers are started once);
# PYTEST_PARALLEL= runs them in one.
PYTEST_PARALLEL ?= -n 2 --dist loadfile
test: $(STAMP) system-packages browser $(NODE_STAMP)
	$(BIN)/python -m ruff check domain projections services tests bench clients examples
	PYTHONPATH=$(VENV)/mypy-path $(BIN)/lint-imports --no-logo --cache-dir $(VENV)/import-linter-cache
	$(BIN)/python -m mypy
	$(BIN)/python -m mypy --strict $(CLIENT)/keyledger_client $(CLIENT)/tests examples
	$(MKDOCS) build --strict --quiet
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The documentation site (mkdocs.yml, pages in docs/) into site/. --strict: a link to a page or heading that
# does not exist, or a page missing from the navigation, fails the build (make test runs it too). Offline:
# no plugin fetches anything at build time. '$(BIN)/mkdocs serve' shows the site while you edit.
docs: $(STAMP)
	$(MKDOCS) build --strict

# One layer each (tests/unit, tests/integration, tests/e2e); only the last two start Postgres and NATS.
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) browser
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

# wrk (Debian) measures the warm-verify rounds a second time with a load generator in C; without it those rows
# are left out.
bench-packages:
	@$(call debian-package,wrk,the benchmarks,its benchmark rows are left out)

bench: $(STAMP) bench-packages
	$(BIN)/python -m bench

# The long runs. The fault matrix, longer (TEST_CHAOS_SECONDS per phase, default 10; writes bench/CHAOS.md),
# and fuzzing: schemathesis over /schema with TEST_FUZZ_EXAMPLES examples per operation and mode (make test
# runs 40 with a fixed seed; this runs 500 with a fresh one).
chaos: $(STAMP)
	TEST_CHAOS_SECONDS=$${TEST_CHAOS_SECONDS:-10} TEST_CHAOS_RESULTS=bench/CHAOS.md \
		$(BIN)/python -m pytest tests/faults -s $(PYTEST_ARGS)
	TEST_FUZZ_EXAMPLES=$${TEST_FUZZ_EXAMPLES:-500} TEST_FUZZ_SEED=$${TEST_FUZZ_SEED:-random} \
		$(BIN)/python -m pytest tests/e2e/test_fuzz.py $(PYTEST_ARGS)

stack-up: $(STAMP)
	$(BIN)/keyledger stack up

stack-down: $(STAMP)
	$(BIN)/keyledger stack down

clean:
	-test -x $(BIN)/keyledger && $(BIN)/keyledger stack down
	rm -rf $(VENV) .keyledger site .pytest_cache .mypy_cache .hypothesis *.egg-info clients/typescript/node_modules
