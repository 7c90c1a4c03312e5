"""Training curves like the book's listings: training as dots, validation as a line, one panel per metric."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Sequence

from .checkpoint import atomic_write_bytes


@dataclass(frozen=True)
class RefLine:
    """A horizontal line on one metric's panel, e.g. the naive-baseline MAE on ``"mae"``."""

    metric: str
    value: float
    label: str


def plot_history(
    history: Sequence[dict],
    path: str | os.PathLike,
    metrics: Sequence[str] | None = None,
    reference_lines: Sequence[RefLine] = (),
) -> None:
    """Write a PNG with one panel per metric: ``"bo"`` training dots, ``"b"`` validation line.

    ``metrics`` defaults to every key ``m`` of the history with a ``val_m`` partner
    (``loss``, ``acc``, ``mae``...). The file is written atomically.
    """
    # A bare Figure renders with Agg and never touches pyplot's global state or the user's
    # backend, so this works on headless machines and inside notebooks alike.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("history is empty: nothing to plot")
    if metrics is None:
        first = history[0]
        metrics = [k for k in first if not k.startswith("val_") and f"val_{k}" in first]
    unknown = [r.metric for r in reference_lines if r.metric not in metrics]
    if unknown:
        raise ValueError(f"reference lines for metrics {unknown} that are not plotted ({list(metrics)})")

    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    fig = Figure(figsize=(5.5 * len(metrics), 4.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, m in zip(axes, metrics):
        ax.plot(epochs, [h.get(m) for h in history], "bo", label=f"Training {m}")
        ax.plot(epochs, [h.get(f"val_{m}") for h in history], "b", label=f"Validation {m}")
        for r in reference_lines:
            if r.metric == m:
                ax.axhline(r.value, color="r", linestyle="--", label=f"{r.label} ({r.value:.4g})")
        ax.set_title(f"Training and validation {m}")
        ax.set_xlabel("Epochs")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(m)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
