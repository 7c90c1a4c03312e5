"""A NaN or inf loss or gradient stops training at that batch, before the optimizer step, with a message
naming the epoch and the batch; the checkpoints keep the last good epoch. ``--skip-nonfinite`` skips such
batches instead and counts them in the history."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from seqtorch.training import (
    NonFiniteError,
    TrainConfig,
    UserError,
    add_common_args,
    binary_classification_task,
    config_from_args,
    fit,
    load_checkpoint,
    read_json,
    setup,
)

from support.tiny_runs import TinyRNNClassifier, cls_datasets, one_thread


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


class _InfGradient(torch.autograd.Function):
    """The identity, whose gradient is inf: a finite loss with an overflowing gradient."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class Poisonable(TinyRNNClassifier):
    """The tiny classifier; a batch whose first input is exactly 1000 gets an inf gradient."""

    def forward(self, x, lengths=None):
        logits = super().forward(x, lengths)
        return _InfGradient.apply(logits) if bool((x[0, 0, 0] == 1000).item()) else logits


def loader(bad: dict[tuple[int, int], str]):
    """``make_train_loader`` over the tiny training set (57 examples), 9 batches of 7; ``bad[(epoch, batch)]``
    (0-based) is "nan" (a NaN input: NaN loss) or "grad" (an inf gradient, finite loss)."""
    train = cls_datasets()[0]

    def make(epoch, rank, world_size):
        batches = []
        for i, (x, y) in enumerate(DataLoader(train, batch_size=7)):
            x = x.clone()
            kind = bad.get((epoch, i))
            if kind == "nan":
                x[0, 2, 0] = math.nan
            elif kind == "grad":
                x[0, 0, 0] = 1000.0
            batches.append((x, y))
        return batches

    return make


def _fit(tmp_path, bad, epochs=3, **overrides):
    cfg = TrainConfig(epochs=epochs, batch_size=7, out=str(tmp_path / "run"), seed=1, progress=False, **overrides)
    _, val, test = cls_datasets()
    with setup(cfg) as rt:
        return fit(Poisonable(), binary_classification_task(), cfg, rt, train=loader(bad), val=val, test=test)


@pytest.mark.parametrize("kind, what", [("nan", "loss (nan)"), ("grad", "gradient of ")])
def test_training_stops_at_the_first_nonfinite_batch_and_keeps_the_last_good_checkpoint(tmp_path, kind, what):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteError) as info:
        _fit(tmp_path, {(1, 4): kind, (2, 0): kind})
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert f"non-finite {what}" in message and "at epoch 2, batch 5" in message, message
    assert f"{out / 'last.pt'} (epoch 1)" in message and "--skip-nonfinite" in message and "--lr" in message
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1 and all(torch.isfinite(v).all() for v in last["model"].values())
    assert len(read_json(out / "history.json")) == 1
    assert not (out / "metrics.json").exists()


def test_a_nan_in_the_first_epoch_says_no_checkpoint_was_written(tmp_path):
    with pytest.raises(NonFiniteError, match=r"at epoch 1, batch 1\. .*no checkpoint \(first epoch\)"):
        _fit(tmp_path, {(0, 0): "nan"})


def test_skip_nonfinite_skips_the_batches_and_counts_them(tmp_path, capsys):
    metrics = _fit(tmp_path, {(1, 4): "nan", (1, 6): "grad", (2, 0): "nan"}, skip_nonfinite=True)
    history = read_json(tmp_path / "run" / "history.json")
    assert [h["skipped_batches"] for h in history] == [0, 2, 1]
    assert all(math.isfinite(h["loss"]) for h in history)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert metrics["epochs"] == 3 and metrics["test"] is not None
    assert "skipped 2 non-finite batches" in capsys.readouterr().out


def test_skipped_batches_take_no_step(tmp_path):
    """Adam counts its steps: 3 epochs of 9 batches are 27 steps, one of them skipped 26."""
    def steps(run_dir):
        state = load_checkpoint(run_dir / "last.pt")["optimizer"]["state"]
        return {int(s["step"]) for s in state.values()}

    _fit(tmp_path / "all", {}, optimizer="adam")
    _fit(tmp_path / "skip", {(1, 3): "nan"}, optimizer="adam", skip_nonfinite=True)
    assert steps(tmp_path / "all" / "run") == {27} and steps(tmp_path / "skip" / "run") == {26}


def test_every_batch_nonfinite_is_an_error_even_when_skipping(tmp_path):
    with pytest.raises(NonFiniteError, match="every batch of epoch 1 \\(9\\)"):
        _fit(tmp_path, {(0, i): "nan" for i in range(9)}, skip_nonfinite=True)


def test_the_stopped_run_continues_with_resume_and_skip(tmp_path):
    bad = {(1, 4): "nan"}
    with pytest.raises(NonFiniteError):
        _fit(tmp_path, bad)
    metrics = _fit(tmp_path, bad, resume=True, skip_nonfinite=True)
    assert metrics["resumed_from_epoch"] == 1 and metrics["epochs"] == 3


def test_skip_nonfinite_is_a_flag():
    parser = add_common_args(argparse.ArgumentParser())
    assert config_from_args(TrainConfig, parser.parse_args(["--skip-nonfinite"])).skip_nonfinite is True
    assert config_from_args(TrainConfig, parser.parse_args([])).skip_nonfinite is False
    assert "--skip-nonfinite" in parser.format_help()


def test_a_model_without_gradients_is_checked_on_its_loss(tmp_path):
    """Parameters that got no gradient (frozen) do not count; the loss still does."""
    model = TinyRNNClassifier()
    for p in model.parameters():
        p.requires_grad_(False)
    model.head = nn.Linear(6, 1)
    cfg = TrainConfig(epochs=1, batch_size=7, out=str(tmp_path / "run"), progress=False)
    _, val, _ = cls_datasets()
    with setup(cfg) as rt, pytest.raises(NonFiniteError, match="loss \\(nan\\) at epoch 1, batch 2"):
        fit(model, binary_classification_task(), cfg, rt, train=loader({(0, 1): "nan"}), val=val)
