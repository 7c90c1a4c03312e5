"""Tiny models, data and a script-like run of ``seqtorch.training.fit``, for the training tests.

:func:`run` is one complete run as a script makes it (config -> setup -> model -> fit) into
``tmp_path / name``; the models have dropout, so a resumed run matches an uninterrupted one only if
the RNG states were restored.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from seqtorch.training import (
    RandomStepsSampler,
    RefLine,
    TrainConfig,
    binary_classification_task,
    fit,
    regression_task,
    setup,
)


@contextlib.contextmanager
def one_thread():
    """These models are tiny: extra intra-op threads only spin, and on a shared CPU that made
    the training tests 4x slower. Restored afterwards so other tests keep their setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TinyRNNClassifier(nn.Module):
    """(B, T, 3) -> logits (B, 1); dropout so that resume must restore the RNG to match."""

    def __init__(self, hidden: int = 6):
        super().__init__()
        self.rnn = nn.GRU(3, hidden, batch_first=True)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x, lengths=None):
        out, h = self.rnn(x)
        if lengths is not None:  # the state at each sequence's last valid step
            h_last = out[torch.arange(x.shape[0]), lengths.to(torch.long) - 1]
        else:
            h_last = h[-1]
        return self.head(self.drop(h_last))


class TinyRegressor(nn.Module):
    """(B, T, 3) -> (B, 1) prediction; dropout on the flattened window."""

    def __init__(self, steps: int = 5):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(3 * steps, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x)


def classification_data(n: int = 96, steps: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, steps, 3, generator=g)
    y = (x[:, :, 0].sum(1) > 0).float()
    return x, y


def cls_datasets(n=96, with_lengths=False):
    x, y = classification_data(n)
    parts = []
    a, b = int(n * 0.6), int(n * 0.8)
    for lo, hi in ((0, a), (a, b), (b, n)):
        if with_lengths:
            lengths = torch.randint(1, x.shape[1] + 1, (hi - lo,), generator=torch.Generator().manual_seed(lo))
            parts.append(TensorDataset(x[lo:hi], lengths, y[lo:hi]))
        else:
            parts.append(TensorDataset(x[lo:hi], y[lo:hi]))
    return parts


def regression_datasets(n=120):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 5, 3, generator=g)
    y = x[:, -1, 1] * 0.7 + 0.1 * torch.randn(n, generator=g)
    a, b = int(n * 0.6), int(n * 0.8)
    return [TensorDataset(x[lo:hi], y[lo:hi]) for lo, hi in ((0, a), (a, b), (b, n))]


def steps_loader_fn(dataset, batch_size, steps, seed):
    """Jena style: an epoch is `steps` random batches, a pure function of (seed, epoch, rank)."""

    def make(epoch, rank, world_size):
        sampler = RandomStepsSampler(len(dataset), steps * batch_size, seed=seed, rank=rank)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)

    return make


def run(tmp_path, name, *, epochs, resume=False, kind="cls", **overrides):
    """One complete script-like run: setup (seeds) -> build model -> fit. Returns metrics."""
    cfg = TrainConfig(epochs=epochs, batch_size=8, out=str(tmp_path / name), seed=3, resume=resume,
                      progress=False, **overrides)
    with setup(cfg) as rt:
        if kind == "cls":
            train, val, test = cls_datasets()
            model, task, train_arg = TinyRNNClassifier(), binary_classification_task(), train
        elif kind == "cls_lengths":
            train, val, test = cls_datasets(with_lengths=True)
            model, task, train_arg = TinyRNNClassifier(), binary_classification_task(), train
        else:
            train, val, test = regression_datasets()
            model, task = TinyRegressor(), regression_task(loss="mae", monitor="val_mae")
            train_arg = steps_loader_fn(train, cfg.batch_size, steps=4, seed=cfg.seed)
        metrics = fit(model, task, cfg, rt, train=train_arg, val=val, test=test,
                      extra={"baseline_mae": 0.5} if kind == "reg" else None,
                      reference_lines=[RefLine("mae", 0.5, "naive")] if kind == "reg" else ())
    return model, task, (train, val, test), metrics
