# gradleak: two commands for a newcomer.
#   make demo   set up .venv and run the main job on embedded MNIST
#   make test   set up .venv and run the test suite
#   make docs   set up .venv and build the documentation site into site/ (warnings are errors)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# every optional feature, so that no test skips: generator priors, DP-SGD, Ray, Flower
EXTRAS ?= dev,generative,dp,ray,flower

.PHONY: setup demo test lint bench clean report-screenshot suite docs tables

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/gradleak attack ig --dataset mnist --model convnet --batch-size 4 --steps 1000 \
		--seed 0 --out runs/demo --overwrite
	$(BIN)/gradleak sweep bench/demo.toml --db runs/demo.sqlite --report runs/demo-report.html

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

# The documentation site (MkDocs + Material + mkdocstrings), built offline; open site/index.html.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

bench: setup
	$(BIN)/python bench/bench_attacks.py

# The sweep report of the demo grid, opened in headless Chromium (Debian: apt-get install chromium);
# writes runs/demo-report.html and runs/demo-report.png, fails on any error found in the page.
report-screenshot: setup
	test -f runs/demo.sqlite || $(BIN)/gradleak sweep bench/demo.toml --db runs/demo.sqlite --no-progress
	$(BIN)/gradleak report runs/demo.sqlite -o runs/demo-report.html
	$(BIN)/python -m gradleak.report.screenshot runs/demo-report.html runs/demo-report.png

# The paper-shaped benchmark suite (about 30 minutes on 2 cores; resumable), its HTML and Markdown.
suite: setup
	$(BIN)/gradleak sweep bench/suite.toml --db runs/suite.sqlite --report runs/suite.html
	$(BIN)/gradleak report runs/suite.sqlite --format md

# Every published results table: runs the committed grids bench/tables/*.toml as resumable sweeps
# (runs/tables/*.sqlite) and writes docs/results/*.md. The committed files took about 870 s of run
# time in all (ggl_table3 540, gifd 305, geng 20, spear_exact 5): about 8 minutes with one worker per
# CPU on 2 cores (before issue 15: 9 300 s, 80 minutes); a killed run resumes. TABLES_ARGS="--only gifd"
# for one table. Not part of `make test`.
tables: setup
	$(BIN)/python bench/tables/make_tables.py $(TABLES_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache site
