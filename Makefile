# keyledger: `make run` serves, `make test` tests. Both build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test typecheck bench stack-up stack-down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "keyledger needs Python 3.11 or newer (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/keyledger stack up
	@echo
	@echo "Relay and projector start now (Ctrl-C stops them; the stack keeps running)."
	@echo "In another shell, try the CLI:"
	@echo "  $(BIN)/keyledger keys create --name demo --scope read:data --access website:abc=read:data"
	@echo "  $(BIN)/keyledger keys list | show KEY_ID | rotate KEY_ID --grace 1h | revoke KEY_ID"
	@echo "  $(BIN)/keyledger replay           # rebuild the key cache from the event store"
	@echo "  $(BIN)/keyledger stack down       # stop Postgres and NATS"
	@echo
	$(BIN)/keyledger run

typecheck: $(STAMP)
	$(BIN)/python -m mypy

test: $(STAMP)
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

stack-up: $(STAMP)
	$(BIN)/keyledger stack up

stack-down: $(STAMP)
	$(BIN)/keyledger stack down

clean:
	-test -x $(BIN)/keyledger && $(BIN)/keyledger stack down
	rm -rf $(VENV) .keyledger .pytest_cache .mypy_cache .hypothesis *.egg-info
