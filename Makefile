# Two commands do all the set-up on a fresh machine:
#   make train   installs what it needs, then trains the book's LSTM on IMDB (the main job)
#   make test    installs what it needs, then runs the test suite without its `slow` tests (what CI runs)
#   make test-all  the same with the `slow` tests too (the full sweeps and long end-to-end runs)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Where the IMDB data comes from: a local aclImdb tarball/dir, or empty to download the official archive.
IMDB_DATA ?= $(firstword $(wildcard ../shared/datasets/imdb))
# Extra flags for the training run, e.g. TRAIN_ARGS=--resume to continue it after Ctrl-C, --overwrite to
# train again into the same --out, or TRAIN_ARGS="--model simplernn --epochs 1 --maxlen 100" for a quick run.
TRAIN_ARGS ?=
# Extra flags for the benchmark, e.g. BENCH_ARGS="--threads 1 --only layers/book".
BENCH_ARGS ?=
# Each benchmark run gets its own files (the script refuses to overwrite a previous run's).
BENCH_OUT := runs/bench-$(shell date -u +%Y%m%dT%H%M%SZ)

.PHONY: install test test-all train bench

install: $(VENV)/.installed

# torch==2.13.0 first: on a CPU-only machine here it is the CPU build on disk; a bare `torch` requirement
# would pull a multi-GB CUDA build. Then the project with its test, plot and kernel extras, built against
# that torch (--no-build-isolation: pip's isolated build would fetch a torch of its own), which compiles
# the C++ library when a compiler is there (setup.py); ninja and setuptools first, for that build.
# The last line reports whether it did (`python -m seqtorch.ops.build`).
# pip runs quietly (-q); the lines echoed around it say what it is doing and how long each part took.
$(VENV)/.installed: pyproject.toml setup.py
	@echo "install: creating $(VENV) and installing torch==2.13.0, setuptools and ninja (a large download unless pip has it cached)..."
	@start=$$(date +%s) && $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/pip install -q torch==2.13.0 "setuptools>=64" "ninja>=1.11" && \
	  echo "install: torch installed in $$(( $$(date +%s) - start )) s"
	@echo "install: installing seqtorch's dependencies and test, plot and Triton extras, then compiling its C++ library (2 to 5 minutes on 2 cores; pip prints nothing meanwhile)..."
	@start=$$(date +%s) && $(BIN)/pip install -q --no-build-isolation -e ".[dev,plot,triton]" && \
	  echo "install: seqtorch installed and its C++ library built in $$(( $$(date +%s) - start )) s"
	$(BIN)/python -m seqtorch.ops.build --no-build || true
	@touch $@

# The default run leaves out the tests marked slow (each has a fast subset that runs here: docs/tests.md).
test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-all: install
	$(BIN)/python -m pytest -q

# How the training script words its hints (resume after Ctrl-C, replace a run): as make commands.
train: export SEQTORCH_RERUN = make train$(if $(filter command line,$(origin IMDB_DATA)), IMDB_DATA=$(IMDB_DATA))
train: export SEQTORCH_RERUN_VAR = TRAIN_ARGS
train: export SEQTORCH_RERUN_ARGS = $(TRAIN_ARGS)
train: install
	$(BIN)/python scripts/train_imdb.py --model lstm $(if $(IMDB_DATA),--data $(IMDB_DATA)) --out runs/imdb-lstm $(TRAIN_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_recurrent.py --out $(BENCH_OUT).json --markdown $(BENCH_OUT).md $(BENCH_ARGS)
