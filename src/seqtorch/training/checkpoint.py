"""What a run saves: its files written atomically with their digests (JSON, PNG bytes, torch
objects), checkpoints read back verified, the previous checkpoint kept, and RNG state capture.

Every file goes through :func:`seqtorch.fileio.atomic_write` (a temporary file beside it, fsync'ed,
then renamed over it), so a crash leaves either the old file or the new one, never a partial file;
and every file carries the sha256 of its bytes, checked on every read (:mod:`.runfiles`).
Checkpoints hold only tensors and plain Python values so that
``torch.load(path, weights_only=True)`` can read them (their digest does not get in its way).
A failed write raises :class:`~.runfiles.SaveError` naming the file and the error.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .runfiles import (
    CheckpointError,
    RunFileError,
    UnverifiedFileWarning,
    keep_copy,
    read_sealed,
    read_with_digest,
    write_sealed,
    write_with_digest,
)

CHECKPOINT_FORMAT = "seqtorch.training/1"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path`` with its digest in ``<path>.sha256`` (:func:`~.runfiles.write_with_digest`)."""
    write_with_digest(path, data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with indent 2 (and its digest); NaN/inf are written as null so the file stays standard JSON."""
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    write_with_digest(path, text.encode())


def as_written(obj: Any) -> Any:
    """``obj`` as :func:`atomic_write_json` writes it, which is what :func:`read_json` returns."""
    return json.loads(json.dumps(_json_safe(obj), allow_nan=False))


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file of a run (history.json, metrics.json), checked against its digest.

    Raises :class:`~.runfiles.RunFileError` naming the file when its bytes are not those written.
    """
    data = read_with_digest(path)
    try:
        return json.loads(data)
    except ValueError as exc:  # no digest to check it against, and not JSON
        raise RunFileError(path, f"not valid JSON ({exc})") from exc


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically, sealed with its digest (:func:`~.runfiles.seal`)."""
    # Serialise to memory first: a pickling error then never touches the disk at all.
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_sealed(path, buf.getvalue())


def save_checkpoint(path: str | os.PathLike, obj: Any, previous: str | os.PathLike | None = None) -> None:
    """:func:`atomic_torch_save`; with ``previous``, the checkpoint at ``path`` is first kept there.

    The one at ``path`` is kept only if it passes its check: a damaged one never replaces a good
    ``previous``. So ``previous`` always holds the checkpoint before the newest, or an older good one.
    """
    path = Path(path)
    if previous is not None and path.exists():
        try:
            with warnings.catch_warnings():  # one from before digests: kept all the same
                warnings.simplefilter("ignore", UnverifiedFileWarning)
                read_sealed(path)
        except CheckpointError as exc:
            warnings.warn(f"{exc}; it is not kept as {Path(previous).name}, which stays as it was",
                          stacklevel=2)
        else:
            keep_copy(path, previous)
    atomic_torch_save(path, obj)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by the training loop (``weights_only=True``), verified.

    Its bytes are checked against the digest it carries before anything is unpickled; then its
    format is checked. Raises :class:`~.runfiles.CheckpointError` naming the file and the problem:
    missing (also a FileNotFoundError), empty or cut short, damaged (digest mismatch), unreadable,
    or not a training checkpoint.
    """
    path = Path(path)
    data = read_sealed(path)
    try:
        ckpt = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types; name the file in one message
        raise CheckpointError(path, f"could not load checkpoint: {type(e).__name__}: {_first_line(e)}",
                              "It is not a checkpoint of seqtorch.training, or it was damaged "
                              "before seqtorch kept digests") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(path, f"is not a {CHECKPOINT_FORMAT!r} checkpoint (found {found!r})")
    return ckpt


def load_checkpoint_or_previous(path: str | os.PathLike, previous: str | os.PathLike,
                                map_location: Any = "cpu") -> tuple[dict, Path]:
    """(checkpoint, the file it came from): ``path``'s, or, if that one is cut short or damaged,
    ``previous``'s, with a warning naming both files.

    Raises :class:`~.runfiles.CheckpointError` naming both when neither can be used.
    """
    path, previous = Path(path), Path(previous)
    try:
        return load_checkpoint(path, map_location), path
    except CheckpointError as newest:
        if isinstance(newest, FileNotFoundError) or not previous.exists():
            raise
        try:
            ckpt = load_checkpoint(previous, map_location)
        except CheckpointError as older:
            raise newest.with_fix(f"The checkpoint before it, {previous}, cannot be used either "
                                  f"({older.problem}). Start the run again with --overwrite, or "
                                  f"restore the files from a backup") from None
        warnings.warn(f"{newest}; using {previous} instead, the checkpoint before it "
                      f"(epoch {ckpt.get('epoch')})", stacklevel=2)
        return ckpt, previous


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def capture_rng_state() -> dict:
    """This process's RNG states as tensors and plain lists (weights_only-loadable)."""
    mt_name, mt_keys, mt_pos, has_gauss, cached_gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": mt_name,
            "keys": torch.from_numpy(mt_keys.astype(np.int64)),
            "pos": int(mt_pos),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "python": {"version": py_version, "state": list(py_state), "gauss_next": py_gauss},
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) != torch.cuda.device_count():
            raise RuntimeError(
                f"checkpoint has CUDA RNG states for {len(state['cuda'])} devices, "
                f"this process sees {torch.cuda.device_count()}"
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return _json_safe(obj.item())
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _json_safe(obj.item())
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj

