"""One run at a time in an --out: a second run into a directory a live run is writing is refused by a
lock (even with --resume or --overwrite), not interleaved; the lock of a killed run does not block the
next one; the lock is released when the run ends. Real processes hold the locks (two whole training
runs racing for one --out: marked slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seqtorch.training import RunDirectoryError, TrainConfig, load_checkpoint, prepare_out_dir, read_json, setup

from support.tiny_runs import one_thread, run

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"

# A process that prepares --out (taking its lock), says so, and waits to be killed.
HOLDER = """
import sys, time
from seqtorch.training import TrainConfig, prepare_out_dir, setup
cfg = TrainConfig(out=sys.argv[1], resume=True, progress=False)
with setup(cfg):
    prepare_out_dir(cfg)
    print("locked", flush=True)
    time.sleep(120)
"""

# A whole training run (4 epochs, slowed down so that another one starts while it trains).
TRAINER = """
import sys, time
from torch.utils.data import DataLoader
from seqtorch.training import TrainConfig, binary_classification_task, fit, setup
from support.tiny_runs import TinyRNNClassifier, cls_datasets, one_thread
train, val, test = cls_datasets()

def slow(epoch, rank, world_size):
    print(f"epoch {epoch}", flush=True)
    time.sleep(2.0)  # long enough for the second process to import and start on a loaded machine
    return DataLoader(train, batch_size=8)

cfg = TrainConfig(epochs=4, batch_size=8, out=sys.argv[1], seed=3, progress=False, overwrite=sys.argv[2] == "overwrite")
with one_thread(), setup(cfg) as rt:
    fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=slow, val=val, test=test)
"""


def _start(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, line: str) -> None:
    for got in proc.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"the process ended before printing {line!r}: {proc.wait()} {proc.stderr.read()[-2000:]}")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _snapshot(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_second_run_into_a_live_runs_out_is_refused(tmp_path):
    run(tmp_path, "run", epochs=1)
    out = tmp_path / "run"
    holder = _start(HOLDER, str(out))
    try:
        _wait_for(holder, "locked")
        before = _snapshot(out)
        for how in ("plain", "resume", "overwrite"):
            with pytest.raises(RunDirectoryError) as info:
                run(tmp_path, "run", epochs=2, resume=how == "resume", overwrite=how == "overwrite")
            message = str(info.value)
            assert message.startswith(f"{out} is in use: another run that is still running there holds its "
                                      f"lock"), (how, message)
            assert "\n" not in message
            assert _snapshot(out) == before, how  # not a byte changed, not a file deleted
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_killed_run_does_not_block_the_next(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = _start(HOLDER, str(out))
    _wait_for(holder, "locked")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    metrics = run(tmp_path, "run", epochs=1)[3]
    assert metrics["epochs"] == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no lock file, nothing hidden left


# Slow: two whole training runs in subprocesses (20 s on 2 cores); by default
# test_a_second_run_into_a_live_runs_out_is_refused meets the same lock held by a live process.
@pytest.mark.slow
def test_two_runs_started_into_one_out_do_not_interleave(tmp_path):
    """The second one, started while the first trains, is refused even with --overwrite (which would
    delete the first one's files); the first one's files are one coherent run."""
    out = tmp_path / "run"
    first = _start(TRAINER, str(out), "plain")
    try:
        _wait_for(first, "epoch 1")  # it has written epoch 1's files and trains on
        second = _start(TRAINER, str(out), "overwrite")
        _, err = second.communicate(timeout=120)
        assert second.returncode != 0 and f"RunDirectoryError: {out} is in use" in err, err[-2000:]
        first.communicate(timeout=120)
        assert first.returncode == 0
    finally:
        first.kill()
    history = read_json(out / "history.json")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert load_checkpoint(out / "last.pt")["epoch"] == 4 and read_json(out / "metrics.json")["epochs"] == 4


def test_the_lock_is_taken_once_per_process_and_released_when_the_run_ends(tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(out=str(out), progress=False)
    with setup(cfg):
        prepare_out_dir(cfg)
        prepare_out_dir(cfg)  # the script prepares --out, then fit does again: the same holder
        probe = _start(HOLDER, str(out))
        _, err = probe.communicate(timeout=120)
        assert probe.returncode != 0 and "is in use" in err
    holder = _start(HOLDER, str(out))  # released with the Runtime
    try:
        _wait_for(holder, "locked")
    finally:
        holder.kill()
        holder.wait()


def test_a_refused_run_does_not_keep_the_lock(tmp_path):
    run(tmp_path, "run", epochs=1)
    out = tmp_path / "run"
    cfg = TrainConfig(out=str(out), progress=False)
    with setup(cfg):
        with pytest.raises(RunDirectoryError, match="already holds a run"):
            prepare_out_dir(cfg)
        holder = _start(HOLDER, str(out))
        try:
            _wait_for(holder, "locked")
        finally:
            holder.kill()
            holder.wait()
    assert json.loads((out / "history.json").read_text())[0]["epoch"] == 1
