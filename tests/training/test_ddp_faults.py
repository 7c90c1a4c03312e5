"""A 2-process torchrun (gloo, CPU) run that loses a process mid-epoch.

The test launches this file with ``python -m torch.distributed.run``; run as a script, the file is
the worker (``worker_main``). A worker kills itself (``kill -9``) or hangs at a chosen batch when the
environment asks for it, on torchrun's first attempt only. Checked: the survivor exits within a bounded
time with one :class:`PeerLostError` message that says how to continue (no gloo traceback, no hang),
whether the peer died (gloo sees the connection break) or hangs (the collective times out); a rerun with
``--resume``, and torchrun's own restart (``--max-restarts``) of a command with ``--resume``, end exactly
where the uninterrupted 2-process run ends; a save that fails on rank 0 stops every rank at once. The
reproductions and the failed save are marked slow.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

EPOCHS = 3
WORLD = 2
TESTS = Path(__file__).resolve().parents[1]


def worker_main(out: str, resume: bool) -> None:
    """One torchrun process of a script-like run. ``FAULT=kill|hang:RANK:EPOCH:BATCH`` (1-based epoch
    and batch) makes that rank kill itself or hang there, on torchrun's first attempt only. A
    UserError ends the process as the scripts end it: its message on stderr, exit status 2."""
    from torch.utils.data import DataLoader

    from seqtorch.training import TrainConfig, UserError, binary_classification_task, fit, setup
    from support.tiny_runs import TinyRNNClassifier, cls_datasets, one_thread

    fault = os.environ.get("FAULT", "")
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"
    train, val, test = cls_datasets()
    if fault == "enospc":  # rank 0's second write of last.pt (epoch 2) finds the disk full
        import errno

        import seqtorch.training.runfiles as runfiles

        real, writes = runfiles.atomic_write, []

        def full_disk(path, write, mode="wb"):
            writes.append(Path(path).name)
            if writes.count("last.pt") == 2 and Path(path).name == "last.pt":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path, write, mode)

        runfiles.atomic_write = full_disk

    def make_train_loader(epoch, rank, world_size):
        sampler = torch.utils.data.DistributedSampler(train, world_size, rank, shuffle=True, seed=5)
        sampler.set_epoch(epoch)
        for batch_no, batch in enumerate(DataLoader(train, batch_size=4, sampler=sampler), start=1):
            if fault.startswith(("kill:", "hang:")) and first_attempt:
                kind, at_rank, at_epoch, at_batch = fault.split(":")
                if (rank, epoch + 1, batch_no) == (int(at_rank), int(at_epoch), int(at_batch)):
                    print(f"rank {rank}: {kind} at epoch {epoch + 1}, batch {batch_no}", flush=True)
                    if kind == "kill":
                        os.kill(os.getpid(), signal.SIGKILL)
                    time.sleep(600)  # hang
            yield batch

    cfg = TrainConfig(epochs=EPOCHS, batch_size=4, out=out, seed=7, device="cpu", progress=False, resume=resume,
                      collective_timeout=float(os.environ.get("COLLECTIVE_TIMEOUT", "20")))
    try:
        with one_thread(), setup(cfg) as rt:
            fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=make_train_loader, val=val,
                test=test)
    except UserError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(exc.exit_code)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, *, resume=False, fault="", max_restarts=0, timeout=20.0, limit=150):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FAULT": fault, "COLLECTIVE_TIMEOUT": str(timeout),
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    # The c10d rendezvous: the one that starts a new round when torchrun restarts the workers.
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--rdzv-backend=c10d",
           f"--rdzv-endpoint=127.0.0.1:{free_port()}", f"--max-restarts={max_restarts}", "--monitor-interval=0.5",
           __file__, str(out), "resume" if resume else "fresh"]
    started = time.monotonic()
    # its own process group: on a timeout the workers go too, not only torchrun (they would outlive the test)
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                             start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        raise
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    return proc, time.monotonic() - started


def _outcome(out: Path):
    from seqtorch.training import load_checkpoint, read_json

    history = [{k: v for k, v in h.items() if k != "seconds"} for h in read_json(out / "history.json")]
    return history, load_checkpoint(out / "last.pt")["model"], read_json(out / "metrics.json")["test"]


def _assert_same(a, b):
    assert a[0] == b[0] and a[2] == b[2]
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def _assert_clear_stop(proc, *causes: str) -> str:
    """The run failed; rank 0 ended with one PeerLostError line naming one of ``causes``, not a traceback."""
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("PeerLostError: rank 0 of 2: ")]
    assert len(lines) == 1, output[-3000:]
    assert any(cause in lines[0] for cause in causes) and "--resume" in lines[0], lines[0]
    assert "[rank0]: Traceback" not in output, output[-3000:]
    return output


def test_a_killed_rank_stops_the_survivor_with_one_message(tmp_path):
    proc, elapsed = torchrun(tmp_path / "run", fault="kill:1:2:3")
    # Rank 0 sees the connection break in its next collective, or torchrun stops it first (SIGTERM).
    output = _assert_clear_stop(proc, "the connection to another process broke: it died or stopped",
                                "stopped by SIGTERM: torchrun stops the other processes")
    assert "rank 1: kill at epoch 2, batch 3" in output
    assert elapsed < 90, elapsed  # torch and two workers start, one epoch trains, then it stops at once


def test_a_hung_rank_times_the_survivor_out(tmp_path):
    proc, elapsed = torchrun(tmp_path / "run", fault="hang:1:1:2", timeout=4.0)
    _assert_clear_stop(proc, "a collective timed out waiting for another process, which is hung or gone")
    assert elapsed < 90, elapsed  # the 600 s hang is cut short by the 4 s collective timeout


# Slow: one more 2-process torchrun (12 s on 2 cores); by default a failed save stops a run in
# tests/training/test_save_faults.py, and a lost rank stops the others in the two tests above.
@pytest.mark.slow
def test_a_failed_save_on_rank_0_stops_every_rank(tmp_path):
    """Rank 0 writes the files; when that fails the others stop too, with its message, not in a hang."""
    proc, elapsed = torchrun(tmp_path / "run", fault="enospc", timeout=60.0)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert any(line.startswith("SaveError: could not write ") and "last.pt: No space left on device" in line
               for line in output.splitlines()), output[-3000:]
    assert any(line.startswith("RunStoppedError: rank 0 stopped the run: could not write ")
               for line in output.splitlines()), output[-3000:]
    assert elapsed < 60, elapsed  # not the 60 s collective timeout


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc, _ = torchrun(out)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return _outcome(out)


# Slow: three 2-process torchruns, the uninterrupted one included (40 s on 2 cores); by default
# tests/training/test_training_ddp.py resumes a 2-process run exactly, and the killed-rank test above kills a rank.
@pytest.mark.slow
def test_resume_after_a_killed_rank_reproduces_the_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc, _ = torchrun(out, fault="kill:1:2:3")
    assert proc.returncode != 0
    proc, _ = torchrun(out, resume=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "resumed from" in proc.stdout and "after epoch 1" in proc.stdout
    _assert_same(_outcome(out), uninterrupted)


# Slow: a torchrun that restarts its workers (25 s on 2 cores); by default the tests the one above names.
@pytest.mark.slow
def test_torchrun_restarts_a_resume_command_that_lost_a_rank(tmp_path, uninterrupted):
    out = tmp_path / "run"
    proc, _ = torchrun(out, resume=True, fault="kill:1:2:3", max_restarts=1)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "rank 1: kill at epoch 2, batch 3" in proc.stdout and "after epoch 1" in proc.stdout
    _assert_same(_outcome(out), uninterrupted)


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2] == "resume")
