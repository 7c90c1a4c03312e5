"""fit under torchrun: 2 CPU processes (gloo) on a tiny task.

The test launches this same file with ``python -m torch.distributed.run``; run as a script,
the file is the worker (see ``worker_main``). Checked: the run exits 0, only rank 0 prints and
writes files, and the reported validation/test metrics equal a single-process evaluation of
the saved weights (the evaluation shards are unequal: 19 and 13 examples over 2 ranks).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqtorch.training import TrainConfig, binary_classification_task, evaluate, fit, load_checkpoint, setup

from conftest import TOL

EPOCHS = 3
WORLD = 2
TESTS = Path(__file__).resolve().parents[1]  # the worker imports conftest from here


class TinyClassifier(nn.Module):
    """(B, T, 3) -> logits (B, 1)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 5, batch_first=True)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(5, 1)

    def forward(self, x):
        _, h = self.rnn(x)
        return self.head(self.drop(h[-1]))


def datasets():
    """train 50, val 19, test 13 examples: odd sizes so shards and last batches are uneven."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(82, 4, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).float()
    return TensorDataset(x[:50], y[:50]), TensorDataset(x[50:69], y[50:69]), TensorDataset(x[69:], y[69:])


def worker_main(out: str, record_dir: str) -> None:
    """One torchrun process: three script-like runs, then record which files this rank wrote.

    Runs: ``straight`` (EPOCHS epochs), ``resumed`` (EPOCHS - 1 epochs, then --resume to EPOCHS).
    The process group is created here so that it outlives each run's ``setup``.
    """
    import torch.distributed as dist

    import seqtorch.training.runfiles as runfiles

    written: list[str] = []
    real_atomic_write, real_link_or_copy = runfiles.atomic_write, runfiles.atomic_link_or_copy

    def recording_atomic_write(path, write, mode="wb"):
        written.append(Path(path).name)
        return real_atomic_write(path, write, mode)

    def recording_link_or_copy(src, dest):
        written.append(Path(dest).name)
        return real_link_or_copy(src, dest)

    # Every file fit writes goes through runfiles' atomic_write or atomic_link_or_copy (looked up at call time).
    runfiles.atomic_write, runfiles.atomic_link_or_copy = recording_atomic_write, recording_link_or_copy
    dist.init_process_group("gloo")
    for name, epochs, resume in (("straight", EPOCHS, False), ("resumed", EPOCHS - 1, False), ("resumed", EPOCHS, True)):
        cfg = TrainConfig(epochs=epochs, batch_size=4, eval_batch_size=5, out=str(Path(out, name)), seed=7,
                          device="cpu", progress=False, resume=resume)
        with setup(cfg) as rt:
            assert rt.distributed and rt.world_size == WORLD, rt
            train, val, test = datasets()
            fit(TinyClassifier(), binary_classification_task(), cfg, rt, train=train, val=val, test=test)
    Path(record_dir, f"rank{dist.get_rank()}.json").write_text(json.dumps(written))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_match_single_process_evaluation_and_resume(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    out = runs / "straight"
    records.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}",
        "--master_addr=127.0.0.1", f"--master_port={free_port()}",
        __file__, str(runs), str(records),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Only rank 0 prints and writes (3 runs: EPOCHS + (EPOCHS - 1) + 1 epoch lines).
    assert proc.stdout.count("Total params") == 3
    assert sum(line.startswith("Epoch ") for line in proc.stdout.splitlines()) == 2 * EPOCHS
    files = {"best.pt", "last.pt", "last.prev.pt", "history.json", "curves.png", "metrics.json",
             "history.json.sha256", "curves.png.sha256", "metrics.json.sha256"}
    assert json.loads((records / "rank1.json").read_text()) == []
    assert set(json.loads((records / "rank0.json").read_text())) == files
    assert sorted(p.name for p in out.iterdir()) == sorted(files)

    metrics = json.loads((out / "metrics.json").read_text())
    history = json.loads((out / "history.json").read_text())
    last = load_checkpoint(out / "last.pt")
    assert metrics["world_size"] == WORLD and last["world_size"] == WORLD and len(last["rng"]) == WORLD
    assert len(history) == EPOCHS

    # Reported numbers == a single-process evaluation of the same data with the saved weights.
    _, val, test = datasets()
    task = binary_classification_task()
    tol = TOL[torch.float32]["atol"]
    for ckpt, split, reported in ((last, val, history[-1]), (load_checkpoint(out / "best.pt"), test, None)):
        model = TinyClassifier()
        model.load_state_dict(ckpt["model"])
        single = evaluate(model, task, DataLoader(split, batch_size=len(split)))
        if reported is None:
            reported = metrics["test"]
        else:
            reported = {k[4:]: v for k, v in reported.items() if k.startswith("val_")}
        assert reported.keys() == single.keys()
        assert abs(reported["loss"] - single["loss"]) <= tol
        assert reported["acc"] == single["acc"]  # exact: correct / count over all 19 or 13 examples

    # --resume under DDP replays every rank's data order and dropout: same history, same weights.
    resumed = load_checkpoint(runs / "resumed" / "last.pt")
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed["history"]) == strip(last["history"])
    for k in last["model"]:
        assert torch.equal(resumed["model"][k], last["model"][k]), k


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2])
