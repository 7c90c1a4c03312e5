"""A disk that fills up, or fails, in the middle of a run's saves.

The failure is injected at every file-system step of every file a 2-epoch run writes (creating the
temporary file, writing it, after none or half of its bytes, fsync, rename, the hard link that keeps
the previous checkpoint), and once for real on a full tmpfs. Each time: training stops with one
:class:`SaveError` naming the file and the error, every file left in ``--out`` passes its check,
and a rerun (``--resume``, or ``--overwrite`` when no epoch was saved) ends exactly where the
uninterrupted run ends. The full sweep is marked slow; a fast subset covers each kind of step.
"""

from __future__ import annotations

import errno

import pytest
import torch

from seqtorch.training import SaveError, load_checkpoint, read_json
from seqtorch.training.runfiles import read_with_digest

from support.file_faults import DiskFaults, DiskStep, small_tmpfs
from support.tiny_runs import one_thread, run

EPOCHS = 2


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _outcome(out):
    """What a resumed run must share with the uninterrupted one: history (without times), final
    weights, best epoch and test numbers."""
    history = [{k: v for k, v in h.items() if k != "seconds"} for h in read_json(out / "history.json")]
    metrics = read_json(out / "metrics.json")
    return history, load_checkpoint(out / "last.pt")["model"], metrics["best_epoch"], metrics["test"]


def _assert_same(a, b, label):
    assert a[0] == b[0] and a[2:] == b[2:], label
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1]), label


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    with one_thread():
        run(tmp, "run", epochs=EPOCHS)
    return _outcome(tmp / "run")


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    """Every step of the writes of a 2-epoch run, with which occurrence of it each one is."""
    tmp = tmp_path_factory.mktemp("dry")
    with pytest.MonkeyPatch.context() as mp, one_thread():
        faults = DiskFaults(mp, tmp / "run")
        run(tmp, "run", epochs=EPOCHS)
    seen: dict[tuple, int] = {}
    listed = []
    for step in faults.steps:
        key = (step.kind, step.target)
        listed.append((step, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return listed


def _check_left_intact(out):
    """Every file in ``out`` passes its check (the previous ones intact); no temporary file is left."""
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith(".part")], names
    for name in names:
        if name.endswith(".pt"):
            load_checkpoint(out / name)
        elif name.endswith(".json"):
            read_json(out / name)
        elif name.endswith(".png"):
            read_with_digest(out / name)


def _fail_then_continue(tmp_path, monkeypatch, step: DiskStep, occurrence: int, uninterrupted):
    out = tmp_path / "run"
    faults = DiskFaults(monkeypatch, out)
    faults.fail_at(step, occurrence)
    with pytest.raises(SaveError) as info:
        run(tmp_path, "run", epochs=EPOCHS)
    assert faults.failed, f"{step} #{occurrence} was never reached"
    message = str(info.value)
    assert "\n" not in message
    assert f"could not write {out / step.target}: No space left on device (ENOSPC)" in message, message
    assert "--resume" in message or "--overwrite" in message, message
    assert info.value.errno == errno.ENOSPC
    _check_left_intact(out)
    faults.disarm()
    resume = (out / "last.pt").exists()
    assert ("--resume" in message) == resume, message  # the message says which of the two applies
    run(tmp_path, "run", epochs=EPOCHS, resume=resume, overwrite=not resume)
    _check_left_intact(out)
    _assert_same(_outcome(out), uninterrupted, f"{step} #{occurrence}")


FAST = [  # (step, occurrence): one of each kind, over every file a run writes
    (DiskStep("write", "best.pt", 0.5), 0),
    (DiskStep("fsync", "last.pt"), 0),
    (DiskStep("link", "last.prev.pt"), 0),
    (DiskStep("rename", "last.pt"), 1),
    (DiskStep("create", "history.json.sha256"), 1),
    (DiskStep("write", "history.json", 0.0), 1),
    (DiskStep("rename", "curves.png"), 0),
    (DiskStep("write", "metrics.json", 0.5), 0),
]


@pytest.mark.parametrize("step, occurrence", FAST, ids=[f"{s}#{o}" for s, o in FAST])
def test_a_failed_write_stops_with_one_message_and_resume_continues(tmp_path, monkeypatch, steps, uninterrupted,
                                                                     step, occurrence):
    assert any((s.kind, s.target, o) == (step.kind, step.target, occurrence) for s, o in steps), steps
    _fail_then_continue(tmp_path, monkeypatch, step, occurrence, uninterrupted)


# Slow: 111 failed runs, each rerun (90 s on 2 cores); by default the FAST cases fail one step of each kind.
@pytest.mark.slow
def test_every_step_of_every_write_of_a_run(tmp_path, monkeypatch, steps, uninterrupted):
    cases = []
    for step, occurrence in steps:
        shares = (0.0, 0.5, 1.0) if step.kind == "write" else (0.0,)
        cases += [(DiskStep(step.kind, step.target, share), occurrence) for share in shares]
    assert len(cases) > 80  # 2 epochs x 6 files, each in several steps
    for i, (step, occurrence) in enumerate(cases):
        with monkeypatch.context() as mp:
            _fail_then_continue(tmp_path / f"case{i}", mp, step, occurrence, uninterrupted)


def test_a_really_full_disk(tmp_path, uninterrupted):
    """The kernel's own ENOSPC, on a tmpfs that epoch 1's files fit on and epoch 2's do not."""
    with small_tmpfs(tmp_path / "disk", size_kib=160) as disk:
        free = disk / "filler"
        # Leave room for one epoch's files (about 100 KiB with the temporary copies), not two.
        free.write_bytes(b"\0" * 40 * 1024)
        with pytest.raises(SaveError) as info:
            run(disk, "run", epochs=EPOCHS)
        assert "No space left on device" in str(info.value) and "--resume" in str(info.value)
        _check_left_intact(disk / "run")
        free.unlink()
        run(disk, "run", epochs=EPOCHS, resume=True)
        _assert_same(_outcome(disk / "run"), uninterrupted, "tmpfs")
