# Two commands do all the set-up on a fresh machine:
#   make train   installs what it needs, then trains the book's LSTM on IMDB (the main job)
#   make test    installs what it needs, then runs the test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Where the IMDB data comes from: a local aclImdb tarball/dir, or empty to download the official archive.
IMDB_DATA ?= $(firstword $(wildcard ../shared/datasets/imdb))
# Extra flags for the training run, e.g. TRAIN_ARGS=--overwrite to train again into the same --out.
TRAIN_ARGS ?=
# Extra flags for the benchmark, e.g. BENCH_ARGS="--threads 1 --only layers/book".
BENCH_ARGS ?=
# Each benchmark run gets its own files (the script refuses to overwrite a previous run's).
BENCH_OUT := runs/bench-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: install test train bench

install: $(VENV)/.installed

# torch==2.13.0 first: on a CPU-only machine here it is the CPU build on disk; a bare `torch` requirement
# would pull a multi-GB CUDA build. Then the project with its test, plot and kernel extras, built against
# that torch (--no-build-isolation: pip's isolated build would fetch a torch of its own), which compiles
# the C++ library when a compiler is there (setup.py); ninja and setuptools first, for that build.
# The last line reports whether it did (`python -m seqtorch.ops.build`).
$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 "setuptools>=64" "ninja>=1.11"
	$(BIN)/pip install -q --no-build-isolation -e ".[dev,plot,triton]"
	$(BIN)/python -m seqtorch.ops.build --no-build || true
	touch $@

test: install
	$(BIN)/python -m pytest -q

train: install
	$(BIN)/python scripts/train_imdb.py --model lstm $(if $(IMDB_DATA),--data $(IMDB_DATA)) --out runs/imdb-lstm $(TRAIN_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_recurrent.py --out $(BENCH_OUT).json --markdown $(BENCH_OUT).md $(BENCH_ARGS)
