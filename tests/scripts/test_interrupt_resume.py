"""Ctrl-C during training, for real: SIGINT to a training subprocess, then the command it prints resumes it.

The run is stopped once its first epoch is saved; it must exit with status 130, say which epoch was cut
short and what ``last.pt`` holds, print no traceback, and give the exact command that resumes it. That
command, run as printed (with ``--epochs`` raised to one more than was saved, to keep the test short),
must continue the run from that epoch to the end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from support.jena_fixture import write_jena_csv

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_jena.py"
# Enough epochs that the run cannot end before the signal; each epoch a second or so.
ARGS = ["--lookback", "24", "--step", "6", "--delay", "12", "--train-end", "1000", "--val-end", "1500",
        "--batch-size", "32", "--eval-batch-size", "448", "--steps-per-epoch", "40", "--epochs", "500",
        "--model", "gru", "--device", "cpu", "--no-progress"]


def test_sigint_stops_the_run_with_a_resume_command_that_continues_it(tmp_path):
    csv = write_jena_csv(tmp_path / "jena.csv", 2_000, seed=2).path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQTORCH_DATA": str(tmp_path / "cache")}
    command = [sys.executable, str(SCRIPT), "--data", str(csv), "--out", "run", *ARGS]
    # SIGINT's default disposition in the child, even if this test runs where it is ignored (a background job).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:  # the epoch line is printed after the epoch's files are written
            if line.startswith("Epoch 1/500"):
                break
            assert time.monotonic() < deadline, "no epoch finished in time"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err
    saved = int(re.search(r"run/last\.pt holds epoch (\d+)", err)[1])
    assert 1 <= saved < 500 and f"Epoch {saved + 1} of 500 was cut short" in err
    assert "interrupted (Ctrl-C)" in err
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["epoch"] == saved  # consistent

    resume = re.search(r"^  resume it: (.+)$", err, re.MULTILINE)[1]
    argv = shlex.split(resume)
    assert argv[-1] == "--resume" and argv[:-1] == [sys.executable, *command[1:]]  # the command, as started
    done = subprocess.run(argv + ["--epochs", str(saved + 1)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, saved + 2))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["resumed_from_epoch"] == saved
