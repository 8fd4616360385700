# gradleak: two commands for a newcomer.
#   make demo   set up .venv and run the main job on embedded MNIST
#   make test   set up .venv and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS ?= dev

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/gradleak attack ig --dataset mnist --model convnet --batch-size 4 --steps 1000 \
		--seed 0 --out runs/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/python bench/bench_attacks.py

clean:
	rm -rf $(VENV) runs .pytest_cache
