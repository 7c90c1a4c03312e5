"""What a run saves: its files written atomically (bytes, JSON, torch objects), checkpoints, and
RNG state capture.

Every file goes through :func:`seqtorch.fileio.atomic_write` (a temporary file beside it, fsync'ed,
then renamed over it), so a crash leaves either the old file or the new one, never a partial file.
Checkpoints hold only tensors and plain Python values so that
``torch.load(path, weights_only=True)`` can read them.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..fileio import atomic_write

CHECKPOINT_FORMAT = "seqtorch.training/1"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """JSON with indent 2; NaN/inf are written as null so the file stays standard JSON."""
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    # Serialise to memory first: a pickling error then never touches the disk at all.
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by the training loop (``weights_only=True``), checking its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors have many types; name the file in one message
        raise RuntimeError(f"could not load checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise RuntimeError(f"{path} is not a {CHECKPOINT_FORMAT!r} checkpoint (found {found!r})")
    return ckpt


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

