"""The training scripts run from a shell: every error a user can cause is one message, exit status 2.

Each case runs ``scripts/train_*.py`` as a subprocess, as a user would, with a mistake in it (a missing or
damaged data file, a flag value, a split the file cannot hold, ``--resume`` of another model), and
requires: exit status 2, no traceback, one ``<script>: error:`` message naming the file, flag or value,
and no ``--out`` folder left behind. ``--debug`` (or ``SEQTORCH_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from support.imdb_fixture import write_aclimdb_tarball
from support.jena_fixture import write_jena_csv
from seqtorch.data.jena import Splits, WindowSpec, check_split
from seqtorch.training import ConfigError

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
# The fixture file's own split and window: 2,000 rows, windows of 4 hourly rows, 12 rows ahead.
JENA_SMALL = ["--lookback", "24", "--step", "6", "--delay", "12", "--train-end", "1000", "--val-end", "1500",
              "--batch-size", "32", "--eval-batch-size", "448", "--steps-per-epoch", "3", "--epochs", "1"]


def run_script(script: str, args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "SEQTORCH_DATA": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, str(SCRIPTS / script), "--device", "cpu", "--no-progress", *args],
                          capture_output=True, text=True, timeout=180, env=environment, cwd=tmp_path)


def assert_one_message(done: subprocess.CompletedProcess, script: str, *needles: str) -> str:
    """Exit status 2, no traceback, the message on stderr naming every needle; returns the message."""
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith(f"{script}: error:")]
    assert len(errors) == 1, done.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def jena_csv(tmp_path_factory) -> Path:
    return write_jena_csv(tmp_path_factory.mktemp("jena") / "jena_climate_2009_2016.csv", 2_000, seed=2).path


@pytest.fixture(scope="module")
def imdb_tarball(tmp_path_factory) -> Path:
    return write_aclimdb_tarball(tmp_path_factory.mktemp("imdb") / "aclImdb_v1.tar.gz", train=20, test=10)


def test_jena_missing_data_file(tmp_path):
    done = run_script("train_jena.py", ["--data", "missing.csv", "--out", "run"], tmp_path)
    assert_one_message(done, "train_jena.py", "missing.csv", "not there")
    assert not (tmp_path / "run").exists()  # the --out made for the run went when the run failed


def test_jena_file_that_is_not_the_jena_format(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b,c\n1,2,3\n")
    done = run_script("train_jena.py", ["--data", "notes.csv", "--out", "run"], tmp_path)
    assert_one_message(done, "train_jena.py", "notes.csv", "header is not the Jena header")
    assert not (tmp_path / "run").exists()


def test_jena_file_shorter_than_the_split_names_the_flags_and_a_split_that_fits(tmp_path, jena_csv):
    done = run_script("train_jena.py", ["--data", str(jena_csv), "--out", "run"], tmp_path)
    message = assert_one_message(done, "train_jena.py", str(jena_csv), "2,000 rows", "--train-end 200000",
                                 "--val-end 300000")
    # The suggestion is a split this file holds.
    suggested = dict(zip(*[iter(message.split("For this file try ")[1].rstrip(".").split())] * 2))
    spec = WindowSpec(int(suggested.get("--lookback", 1440)), 6, int(suggested.get("--delay", 144)))
    check_split(2_000, spec, Splits(int(suggested["--train-end"]), int(suggested["--val-end"])), 128)


def test_jena_flag_value(tmp_path, jena_csv):
    done = run_script("train_jena.py", ["--data", str(jena_csv), "--out", "run", *JENA_SMALL, "--epochs", "-1"],
                      tmp_path)
    assert_one_message(done, "train_jena.py", "--epochs must be >= 0, got -1")
    # The script's own settings are the same kind of error (the message path above is shared).
    script = runpy.run_path(str(SCRIPTS / "train_jena.py"))
    for flags, needle in ((["--lookback", "25"], "multiple of step"),
                          (["--steps-per-epoch", "0"], "--steps-per-epoch must be >= 1")):
        with pytest.raises(ConfigError, match=needle):
            script["main"](["--data", str(jena_csv), "--out", str(tmp_path / "run"), *JENA_SMALL, *flags])


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU where there is none")
def test_device_cuda_without_a_gpu(tmp_path, jena_csv):
    done = run_script("train_jena.py", ["--data", str(jena_csv), "--out", "run", "--device", "cuda"], tmp_path)
    assert_one_message(done, "train_jena.py", "--device cuda", "--device cpu")


def test_imdb_missing_data_folder(tmp_path):
    done = run_script("train_imdb.py", ["--data", "no-such-folder", "--out", "run"], tmp_path)
    message = assert_one_message(done, "train_imdb.py", "no-such-folder", "does not exist", "no --data")
    assert "None" not in message  # a Python value means nothing on the command line
    assert not (tmp_path / "run").exists()


def test_imdb_truncated_tarball_is_reported_as_truncated(tmp_path, imdb_tarball):
    cut = tmp_path / "aclImdb_v1.tar.gz"
    cut.write_bytes(imdb_tarball.read_bytes()[:imdb_tarball.stat().st_size // 2])
    done = run_script("train_imdb.py", ["--data", str(cut), "--out", "run"], tmp_path)
    assert_one_message(done, "train_imdb.py", str(cut), "is truncated", "download it again")


def test_imdb_flag_value(tmp_path, imdb_tarball):
    done = run_script("train_imdb.py", ["--data", str(imdb_tarball), "--out", "run", "--hidden", "0"], tmp_path)
    assert_one_message(done, "train_imdb.py", "--hidden must be >= 1, got 0")


def test_resume_of_a_run_with_another_model(tmp_path, jena_csv, monkeypatch):
    # The first run in this process (the second, refused, is the one under test).
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    script = runpy.run_path(str(SCRIPTS / "train_jena.py"))
    script["main"](["--data", str(jena_csv), "--out", str(tmp_path / "run"), "--model", "gru", "--device", "cpu",
                    "--no-progress", *JENA_SMALL])
    before = (tmp_path / "run" / "last.pt").read_bytes()
    done = run_script("train_jena.py", ["--data", str(jena_csv), "--out", "run", "--model", "lstm", "--resume",
                                        *JENA_SMALL], tmp_path)
    assert_one_message(done, "train_jena.py", "run/last.pt", "--model 'gru' there, 'lstm' here", "--overwrite")
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_an_occupied_out_names_the_commands_that_continue_or_replace_it(tmp_path, jena_csv):
    args = ["--data", str(jena_csv), "--out", "run", "--model", "naive", *JENA_SMALL]
    assert run_script("train_jena.py", args, tmp_path).returncode == 0
    done = run_script("train_jena.py", args, tmp_path)
    assert_one_message(done, "train_jena.py", "already holds a run")
    hints = dict(line.strip().split(": ", 1) for line in done.stderr.splitlines() if line.startswith("  "))
    script = str(SCRIPTS / "train_jena.py")
    assert script in hints["continue it"] and hints["continue it"].endswith(" --resume")
    assert script in hints["replace it"] and hints["replace it"].endswith(" --overwrite")


def test_debug_shows_the_traceback(tmp_path):
    """--debug here; SEQTORCH_DEBUG=1 takes the same path (tests/training/test_cli_interrupt.py)."""
    done = run_script("train_jena.py", ["--data", "missing.csv", "--out", "run", "--debug"], tmp_path)
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "DataNotFoundError" in done.stderr


def test_the_jena_checksum_is_reported_once(tmp_path, jena_csv):
    done = run_script("train_jena.py", ["--data", str(jena_csv), "--out", "run", "--model", "naive", *JENA_SMALL],
                      tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert output.count("differs from the recorded") == 1 and "JenaChecksumWarning" not in output
