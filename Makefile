# `make demo` and `make test` set everything up on a fresh machine: they create .venv when
# it is missing and (re)install the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
GAMES := numberline ezpoints points24 blackjack
DEMO := demo

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the rest then resolves on top of it without replacing it.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,alfworld]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rlvlm games --render $(DEMO)/images
	@header=1; for game in $(GAMES); do for policy in oracle random; do \
		table=$$($(BIN)/rlvlm eval --game $$game --policy $$policy --episodes 200 \
			--out $(DEMO)/eval/$$game-$$policy.json) || exit 1; \
		[ $$header = 1 ] && echo "$$table" | head -n 1; header=0; \
		echo "$$table" | sed -n 2p; \
	done; done
	@echo "demo results in $(DEMO)/eval/, pictures in $(DEMO)/images/"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/rlvlm bench envs

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
