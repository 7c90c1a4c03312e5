"""The Makefile as a newcomer meets it: `make install` says what it is doing before each quiet pip step and
how long it took after, `make train` tells the training script how to word its hints
(`make train TRAIN_ARGS=--resume`), and `make test` (CI's) leaves the slow tests out that `make test-all` runs.
Run against a stand-in interpreter and venv, so nothing is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

# `python -m venv DIR` makes DIR/bin/pip and DIR/bin/python that log their arguments and environment.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    mkdir -p "$3/bin"
    for tool in pip python; do
        printf '#!/bin/sh\\necho "%s $*" >> "$LOG"\\nenv | grep "^SEQTORCH_RERUN" >> "$LOG"\\nexit 0\\n' \\
            "$tool" > "$3/bin/$tool"
        chmod +x "$3/bin/$tool"
    done
fi
"""


@pytest.fixture
def fake(tmp_path):
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return {"PYTHON": str(python), "VENV": str(tmp_path / "venv"), "log": tmp_path / "log"}


def make(target: str, fake: dict, *assignments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LOG": str(fake["log"])}
    return subprocess.run(["make", "-s", "-C", str(ROOT), target, f"PYTHON={fake['PYTHON']}", f"VENV={fake['VENV']}",
                           *assignments], capture_output=True, text=True, env=env, timeout=60)


def test_install_says_what_it_does_and_how_long_it_took(fake):
    done = make("install", fake)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("install:")]
    assert len(lines) == 4, done.stdout
    assert "torch==2.13.0" in lines[0] and re.fullmatch(r"install: torch installed in \d+ s", lines[1])
    assert "compiling its C++ library" in lines[2] and "minutes" in lines[2]
    assert re.fullmatch(r"install: seqtorch installed and its C\+\+ library built in \d+ s", lines[3])
    log = fake["log"].read_text()
    assert "pip install -q --no-build-isolation -e .[dev,plot,triton]" in log
    assert "python -m seqtorch.ops.build --no-build" in log  # .ci/run's report comes from this module


def test_train_tells_the_script_to_word_its_hints_as_make_commands(fake):
    assert make("install", fake).returncode == 0
    done = make("train", fake, "TRAIN_ARGS=--epochs 3", "IMDB_DATA=/data/imdb")
    assert done.returncode == 0, done.stderr
    log = fake["log"].read_text().splitlines()
    assert "python scripts/train_imdb.py --model lstm --data /data/imdb --out runs/imdb-lstm --epochs 3" in log
    assert {"SEQTORCH_RERUN=make train IMDB_DATA=/data/imdb", "SEQTORCH_RERUN_VAR=TRAIN_ARGS",
            "SEQTORCH_RERUN_ARGS=--epochs 3"} <= set(log)


def test_test_leaves_the_slow_tests_out_and_test_all_runs_them(fake):
    assert make("install", fake).returncode == 0
    for target in ("test", "test-all"):
        done = make(target, fake)
        assert done.returncode == 0, done.stderr
    runs = [line for line in fake["log"].read_text().splitlines() if line.startswith("python -m pytest")]
    assert runs == ["python -m pytest -q -m not slow", "python -m pytest -q"]  # the fake python drops the quotes
