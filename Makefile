# cloister — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-all test-deploy lint typecheck bench clean deps deps-run

## the Debian packages (scripts/install-deps: apt-get as root, else it prints the command)
deps:
	@PYTHON=$(PYTHON) scripts/install-deps test

deps-run:
	@PYTHON=$(PYTHON) scripts/install-deps run

# `test: deps $(STAMP)`: deps first, so the TPM extra below finds libtss2-dev
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

# full-suite runs queue for the machine when several run at once (uncontended: no wait)
TEST_LOCK ?= flock -w 5400 /tmp/cloister-make-test.lock

## the whole test suite (fast subset of the fault suite), plus lint and types
test: deps $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(TEST_LOCK) $(BIN)/python -m pytest -n 2 -m "not slow" tests

## everything, including the long fault and fuzz cases and the podman deployment e2e
## (--dist loadgroup: the podman tests share one image build, on one worker)
test-all: deps $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

## the deployment run for real: images built with podman, compose up through the real
## Compose binary, the walkthrough (a few minutes; the first run of a day builds the base)
test-deploy: deps $(STAMP)
	$(TEST_LOCK) $(BIN)/python -m pytest -m slow -v --durations=0 tests/deploy/test_deploy_podman.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

## the benchmark suite (a few minutes; `$(BIN)/python -m bench --quick` for about one):
## rewrites bench/results.json, bench/results.png and the README's table made from them
bench: deps $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench
	$(BIN)/python -m bench.readme --write

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

## the main job: the confidential patient service on this machine, until Ctrl-C
## (redis-server, gocryptfs and fuse3 come from the distribution: scripts/install-deps run)
run: deps-run $(STAMP)
	$(BIN)/cloister demo up $(DEMO_ARGS)
