# `make demo` and `make test` set everything up on a fresh machine: they create .venv when
# it is missing and (re)install the project when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned: the rest then resolves on top of it without replacing it.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev,alfworld,ray,baselines]"
	touch $(STAMP)

# The main job: the embedded default config (tiny preset, NumberLine, SFT then PPO), then
# its report. A second `make demo` starts a new run; the vision pretraining stays cached.
demo: $(STAMP)
	$(BIN)/rlvlm train --out $(DEMO)/runs
	$(BIN)/rlvlm report "$$(ls -td $(DEMO)/runs/*/ | head -n 1)"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The report's browser test drives Debian's Chromium, installed here where it is missing.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: lint $(CHROMIUM)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/rlvlm bench envs

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache
