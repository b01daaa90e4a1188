# labelertok — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data/synthetic
PRETRAINED ?= data/tiny_clip_phrases.pt
export MPLBACKEND := Agg
export PYTHONUNBUFFERED := 1

.PHONY: install lab data explore demo explain test test-nbs test-py test-slow check-export export clean-nbs compare bench standin docs clean

install: $(STAMP)

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (labelertok)" >/dev/null
	touch $(STAMP)

# JupyterLab from .venv with the project's kernel, at the repository root, on this machine only (127.0.0.1)
# and with token authentication: open the address it prints (it holds the token). Builds the demo data first.
# As root (a container) it adds --allow-root. LAB_PORT picks the port (the next free one if taken); LAB_ARGS
# passes more options (e.g. --no-browser).
LAB_PORT ?= 8888
LAB_ARGS ?=
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP) data
	@echo "make lab: JupyterLab on this machine only (127.0.0.1, port $(LAB_PORT) or the next free one), with the"
	@echo "project's kernel \"Python 3 (labelertok)\" (.venv), at the repository root$(if $(LAB_ROOT), (as root: --allow-root),)."
	@echo "Open the http://127.0.0.1:<port>/lab?token=<token> address printed below (the token is the password);"
	@echo "start with nbs/index.ipynb. Remote machine: ssh -L $(LAB_PORT):127.0.0.1:$(LAB_PORT) <host>. Ctrl-C stops it."
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.port=$(LAB_PORT) --ServerApp.root_dir="$(CURDIR)" $(LAB_ROOT) $(LAB_ARGS)

# The embedded synthetic world and the tiny CLIP pretrained contrastively on synthetic faces and captions alone
# (`phrases-p8` recipe, tiny-p8), the CPU stand-in for OpenAI's weights (both git-ignored; regenerated on demand, see 1_method/07_pretrain).
data: $(DATA)/big_compare_label.xlsx $(DATA)/big_label.xlsx $(PRETRAINED)

$(DATA)/big_compare_label.xlsx: | $(STAMP)
	$(BIN)/labelertok synth $(DATA)

# the ratings, for a world written before it had them (its comparison files come out byte-identical)
$(DATA)/big_label.xlsx: | $(STAMP) $(DATA)/big_compare_label.xlsx
	test -f $@ || $(BIN)/labelertok synth $(DATA) --overwrite

$(PRETRAINED): | $(STAMP)
	$(BIN)/labelertok pretrain $(PRETRAINED)

export: $(STAMP)
	$(BIN)/nbdev_export

clean-nbs: $(STAMP)
	$(BIN)/nbdev_clean

# Fails when labelertok/ is out of step with the notebooks.
check-export: $(STAMP)
	@rm -rf .cache/export-check && mkdir -p .cache/export-check && cp -r labelertok .cache/export-check/
	$(BIN)/nbdev_export
	@if ! diff -r -x __pycache__ -q .cache/export-check/labelertok labelertok; then \
	  echo "labelertok/ is out of step with nbs/: run 'make export' and commit both."; exit 1; fi
	@echo "export in sync"

test-nbs: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

# the first tier of tests/: every test not marked slow
test-py: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m 'not slow' tests

test: check-export test-nbs test-py

# The second tier (`.ci/run` runs it after `make test`): the notebooks with `#| slow` cells (in every folder of nbs/),
# those cells included — the engine's learning checks (2_training/05_train: consistent labelers learned, the random
# clicker at chance), the scale-3 world (0_study/05_synthetic) and the bootstrap's coverage beside the crossed
# interval's (0_study/06_intervals); then the demo data (built if missing) and the tests of tests/ marked slow: the
# longest end-to-end runs (sweeps, every conditioning mode through the commands, papermill on every experiment
# notebook, two processes from the command line), the documentation site, and the known-answer check of `explain` on
# the 6-labeler hybrid demo against the world's true tastes (tests/test_explain.py).
SLOW_NBS := $(shell grep -rl --include='*.ipynb' '"\#| slow' nbs | sort)
test-slow: $(STAMP) data
	for nb in $(SLOW_NBS); do OMP_NUM_THREADS=1 $(BIN)/nbdev_test --flags slow --timing --path $$nb || exit 1; done
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m slow tests

# The CPU demos (runs/<preset>/): the 2- and 6-labeler token models of the study and the 6-labeler model with hybrid
# conditioning (the one `make explain` and the how-to guide explain), then their reports with the executed notebooks
# beside them: figures/<preset>/results.md, plots, calibration and <preset>.ipynb (paths relative to the repository).
demo: $(STAMP) data
	$(BIN)/labelertok run two_users_demo --overwrite
	$(BIN)/labelertok run six_users_demo --overwrite
	$(BIN)/labelertok run six_users_hybrid_demo --overwrite
	$(BIN)/labelertok report runs/two_users_demo runs/six_users_demo runs/six_users_hybrid_demo
	@echo "demo done: see figures/two_users_demo/, figures/six_users_demo/, figures/six_users_hybrid_demo/ and runs/"

# What the demo labelers see (figures/explain/ and docs/explain/demo_labelers.md): the hybrid demo explained, checked
# against the world's true tastes on it and on 4 more seeds and on the token-only demo, and the explorer's screenshot
# (benchmarks/explain_demo.py; trains the runs it misses, about 2 min each).
explain: $(STAMP) data
	$(BIN)/python benchmarks/explain_demo.py

compare: $(STAMP) data
	$(BIN)/labelertok compare --overwrite
	$(BIN)/python -c "from labelertok.paths import publish_notebook as p; print(p('runs/compare/run.ipynb', 'figures/compare/compare.ipynb'))"

bench: $(STAMP) data
	$(BIN)/python benchmarks/train_speed.py --quick

# What each CPU stand-in sees (figures/standin/): the default (`phrases-p8` recipe, tiny-p8, captions alone) against
# the two with a feature read-out (`readout-p8`, tiny-p8; `readout-p16`, tiny) and the other captions-only one
# (`captions-p8`; each pretrained first if missing):
# R² of every latent feature from the frozen embeddings, and each labeler's visible ceiling beside the Bayes ceiling.
standin: $(STAMP) data
	$(BIN)/python benchmarks/standin.py

# The documentation site, offline: every notebook executed (cached in _proc/exec/: a warm build executes only the
# notebooks a change can affect) and rendered with its outputs, how-to guides, the study's data format and results,
# the API reference, maths by a local MathJax. Open _docs/index.html. One progress line per executed notebook.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf runs .cache _proc _docs
