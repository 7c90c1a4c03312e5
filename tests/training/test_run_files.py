"""A run's files prove themselves: a flipped bit or a cut anywhere in a checkpoint, history or metrics
file is refused with one message naming the file; --resume falls back to last.prev.pt when last.pt is
damaged; ``torch.load(weights_only=True)`` still reads the checkpoints; and no crash between a file and
its digest file leaves a pair that passes the check with other bytes, or a good file that fails it."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import warnings
import zipfile

import pytest
import torch

from seqtorch.training import (
    CheckpointError,
    RunFileError,
    UnverifiedFileWarning,
    UserError,
    atomic_torch_save,
    atomic_write_json,
    load_checkpoint,
    read_json,
)
from seqtorch.training.runfiles import digest_path, read_with_digest, seal, write_with_digest

from support.tiny_runs import one_thread, run


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _flip(path, at: float | int, bit: int = 0):
    """Flip one bit of ``path`` at byte ``at`` (a fraction of its size, or an index from the end if < 0)."""
    data = bytearray(path.read_bytes())
    i = int(len(data) * at) if isinstance(at, float) else at % len(data)
    data[i] ^= 1 << bit
    path.write_bytes(bytes(data))


def _history(out):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in read_json(out / "history.json")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 3-epoch run (its files), and the same run stopped after 2 epochs."""
    tmp = tmp_path_factory.mktemp("runs")
    with one_thread():
        run(tmp, "three", epochs=3)
        run(tmp, "two", epochs=2)
    return tmp


def test_a_checkpoint_is_sealed_and_still_loads_with_plain_torch_load(trained):
    path = trained / "three" / "last.pt"
    with zipfile.ZipFile(path) as archive:
        comment = archive.comment.decode()
        assert archive.testzip() is None  # every member's CRC as well
    data = path.read_bytes()
    unsealed = data[:-82] + b"\0\0"
    assert comment == "seqtorch-sha256:" + hashlib.sha256(unsealed).hexdigest()
    plain = torch.load(path, weights_only=True)
    assert plain["epoch"] == 3 and plain["model"].keys() == load_checkpoint(path)["model"].keys()
    assert torch.load(path, weights_only=True, mmap=True)["epoch"] == 3


@pytest.mark.parametrize("where", [0.0, 0.02, 0.3, 0.5, 0.75, 0.97, -90, -70, -1],
                         ids=lambda w: f"at{w}")
def test_one_flipped_bit_anywhere_in_a_checkpoint_is_refused(tmp_path, trained, where):
    """Anywhere: zip headers, the pickle, tensor data, the central directory, the end record, the digest."""
    path = tmp_path / "last.pt"
    shutil.copy(trained / "three" / "last.pt", path)
    _flip(path, where, bit=3)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "damaged" in message or "not a checkpoint" in message
    assert isinstance(info.value, UserError) and info.value.exit_code == 2


def test_a_flip_in_tensor_data_used_to_load_silently(tmp_path, trained):
    """What the digest is for: torch's reader does not notice a changed weight."""
    path = tmp_path / "last.pt"
    shutil.copy(trained / "three" / "last.pt", path)
    with zipfile.ZipFile(path) as archive:  # the first tensor's bytes
        info = next(i for i in archive.infolist() if "/data/" in i.filename)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    _flip(path, start + 2, bit=6)
    assert torch.load(path, weights_only=True)["epoch"] == 3  # torch reads it without a word
    with pytest.raises(CheckpointError, match="do not match its digest"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -83, -40, -1], ids=lambda k: f"keep{k}")
def test_a_truncated_checkpoint_says_it_is_cut_short(tmp_path, trained, keep):
    data = (trained / "three" / "last.pt").read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path = tmp_path / "last.pt"
    path.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "cut short" in message, message


def test_resume_falls_back_to_the_previous_checkpoint_when_last_pt_is_damaged(tmp_path, trained):
    out = tmp_path / "run"
    shutil.copytree(trained / "two", out)
    previous = load_checkpoint(out / "last.prev.pt")
    assert previous["epoch"] == 1
    _flip(out / "last.pt", 0.5)
    with pytest.warns(UserWarning) as caught:
        metrics = run(tmp_path, "run", epochs=3, resume=True)[3]
    text = " ".join(str(w.message) for w in caught)
    assert f"{out / 'last.pt'}: its bytes do not match its digest" in text
    assert f"using {out / 'last.prev.pt'} instead" in text and "epoch 1" in text
    assert metrics["resumed_from_epoch"] == 1
    # Epochs 2 and 3 trained again from epoch 1: the same run as the uninterrupted one.
    assert _history(out) == _history(trained / "three")
    a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(trained / "three" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert load_checkpoint(out / "last.prev.pt")["epoch"] == 2


def test_resume_refuses_when_both_checkpoints_are_damaged(tmp_path, trained):
    out = tmp_path / "run"
    shutil.copytree(trained / "two", out)
    _flip(out / "last.pt", 0.5)
    _flip(out / "last.prev.pt", 0.6)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(CheckpointError) as info:
        run(tmp_path, "run", epochs=3, resume=True)
    message = str(info.value)
    assert str(out / "last.pt") in message and str(out / "last.prev.pt") in message and "\n" not in message
    assert "--overwrite" in message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_damaged_best_pt_is_refused_at_the_test_evaluation(tmp_path, trained):
    out = tmp_path / "run"
    shutil.copytree(trained / "three", out)
    _flip(out / "best.pt", 0.4)
    with pytest.raises(CheckpointError) as info:
        run(tmp_path, "run", epochs=3, resume=True)  # a finished run: --resume only tests best.pt
    message = str(info.value)
    assert message.startswith(f"{out / 'best.pt'}: its bytes do not match its digest")
    assert "no other file keeps" in message and "\n" not in message


@pytest.mark.parametrize("name", ["history.json", "metrics.json", "curves.png"])
def test_history_metrics_and_curves_carry_a_digest_that_sha256sum_checks(tmp_path, trained, name):
    out = tmp_path / "run"
    shutil.copytree(trained / "three", out)
    sidecar = digest_path(out / name)
    digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert sidecar.read_text() == f"{digest}  {name}\n"
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "-c", sidecar.name], cwd=out, capture_output=True).returncode == 0
    _flip(out / name, 0.5, bit=1)
    with pytest.raises(RunFileError) as info:
        read_with_digest(out / name)
    assert str(info.value).startswith(f"{out / name}: its bytes") and "\n" not in str(info.value)


def test_read_json_checks_the_digest(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"test": {"acc": 0.5}})
    assert read_json(path) == {"test": {"acc": 0.5}}
    path.write_text(path.read_text().replace("0.5", "0.9"))  # an edit: valid JSON, other numbers
    with pytest.raises(RunFileError, match="metrics.json: its bytes .* do not match the digest"):
        read_json(path)


def test_every_moment_of_a_rewrite_with_its_digest_file_is_consistent(tmp_path, monkeypatch):
    """A crash can stop write_with_digest after any of its three renames: each state on disk accepts
    the bytes that are there (old or new), and only those."""
    import seqtorch.training.runfiles as runfiles

    path = tmp_path / "history.json"
    write_with_digest(path, b"[1]\n")
    states = []
    real = runfiles.atomic_write

    def snapshot_after(target, write, mode="wb"):
        real(target, write, mode)
        states.append((path.read_bytes(), digest_path(path).read_text()))

    monkeypatch.setattr(runfiles, "atomic_write", snapshot_after)
    write_with_digest(path, b"[1, 2]\n")
    monkeypatch.undo()
    assert [data for data, _ in states] == [b"[1]\n", b"[1, 2]\n", b"[1, 2]\n"]
    for data, listing in states:
        path.write_bytes(data)
        digest_path(path).write_text(listing)
        assert read_with_digest(path) == data  # what is there passes
        path.write_bytes(b"[3]\n")
        with pytest.raises(RunFileError):  # and nothing else does
            read_with_digest(path)


def test_files_from_before_digests_are_read_with_a_warning(tmp_path):
    torch.save({"format": "seqtorch.training/1", "epoch": 1}, tmp_path / "old.pt")
    (tmp_path / "old.json").write_text(json.dumps([1]))
    with pytest.warns(UnverifiedFileWarning, match="old.pt carries no digest"):
        assert load_checkpoint(tmp_path / "old.pt")["epoch"] == 1
    with pytest.warns(UnverifiedFileWarning, match="old.json has no digest file old.json.sha256"):
        assert read_json(tmp_path / "old.json") == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atomic_torch_save(tmp_path / "new.pt", {"format": "seqtorch.training/1", "epoch": 2})
        assert load_checkpoint(tmp_path / "new.pt")["epoch"] == 2


def test_seal_refuses_what_is_not_torch_save_output():
    with pytest.raises(ValueError, match="zip archive without a comment"):
        seal(b"not a zip")
