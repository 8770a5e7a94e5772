# cloister — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all lint typecheck bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@# TPM support builds against libtss2 (Debian: libtss2-dev); without it the TPM tests
	@# are skipped with their reason
	@if pkg-config --exists tss2-esys 2>/dev/null; then \
	  $(BIN)/python -m pip install --quiet -e '.[test,tpm]'; \
	else \
	  echo "note: libtss2-dev missing, TPM tests will be skipped" \
	       "(apt-get install libtss2-dev pkg-config swtpm swtpm-tools tpm2-tools)"; \
	fi
	@touch $(STAMP)

## the whole test suite (fast subset of the fault suite), plus lint and types
test: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -m "not slow" tests

## everything, including the long fault and fuzz cases
test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 tests

lint: $(STAMP)
	$(BIN)/ruff check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

## the benchmark suite (a few minutes; `$(BIN)/python -m bench --quick` for about one)
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

## the main job: the confidential patient service on this machine, until Ctrl-C
## (redis-server, gocryptfs and fuse3 come from the distribution; installed here when
## missing and root)
run: $(STAMP)
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v gocryptfs >/dev/null 2>&1 || missing="$$missing gocryptfs fuse3"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing (apt-get install$$missing)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else \
	    echo "missing:$$missing; install with: sudo apt-get install$$missing"; exit 1; \
	  fi; \
	fi
	$(BIN)/cloister demo up $(DEMO_ARGS)
