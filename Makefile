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

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info

## the main job (today: check the seed sessions; see README)
run: $(STAMP)
	$(BIN)/cloister session check tests/data/seed/flask.yml \
	  -e FLASK_SESSION=flask -e REDIS_SESSION=redis -e MRENCLAVE=$$($(BIN)/python -c 'print("0"*64)') \
	  -e SCONE_FSPF_KEY=$$($(BIN)/python -c 'print("0"*64)') -e SCONE_FSPF_TAG=$$($(BIN)/python -c 'print("0"*32)')
	$(BIN)/cloister session check tests/data/seed/redis.yml \
	  -e FLASK_SESSION=flask -e REDIS_SESSION=redis -e MRENCLAVE_REDIS=$$($(BIN)/python -c 'print("0"*64)')
