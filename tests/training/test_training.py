"""seqtorch.training on tiny torch.nn models: files written, resume equivalence, checkpoints,
atomic writes, summary, plots, optimizers, samplers and the config/CLI."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from seqtorch.training import (
    ConfigError,
    KerasAdam,
    KerasRMSprop,
    RandomStepsSampler,
    RefLine,
    ResumeError,
    ShardedEvalSampler,
    Task,
    TrainConfig,
    add_common_args,
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    binary_classification_task,
    capture_rng_state,
    config_from_args,
    default_forward_batch,
    eval_loader,
    evaluate,
    fit,
    load_checkpoint,
    make_optimizer,
    model_summary,
    plot_history,
    regression_task,
    restore_rng_state,
    setup,
)

from conftest import TOL
from support.file_faults import SyncRecorder, held_by_a_live_writer, leftover_temp, read_only_dir
from support.tiny_runs import TinyRNNClassifier, cls_datasets, one_thread, run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["cls", "cls_lengths", "reg"])
def test_fit_writes_every_file(tmp_path, kind, capsys):
    model, task, (train, val, test), metrics = run(tmp_path, "run", epochs=3, kind=kind)
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["history.json", "metrics.json", "curves.png", "best.pt", "last.pt", "last.prev.pt",
         "history.json.sha256", "metrics.json.sha256", "curves.png.sha256"]
    )  # and no temporary files left behind

    history = json.loads((out / "history.json").read_text())
    names = ["loss", "acc"] if kind.startswith("cls") else ["loss", "mae"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for h in history:
        assert set(h) == {"epoch", "seconds", *names, *(f"val_{n}" for n in names)}
        assert all(math.isfinite(h[k]) for k in h)

    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    monitored = [h[task.monitor] for h in history]
    best = (max if task.mode == "max" else min)(monitored)
    assert metrics["best_epoch"] == monitored.index(best) + 1  # ties keep the earliest epoch
    assert metrics["best_value"] == best
    assert metrics["epochs"] == 3 and metrics["world_size"] == 1 and metrics["device"] == "cpu"
    assert metrics["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert metrics["config"]["seed"] == 3 and metrics["config"]["out"] == str(out)
    assert metrics["train_seconds"] == pytest.approx(sum(h["seconds"] for h in history))
    if kind == "reg":
        assert metrics["baseline_mae"] == 0.5

    # The test numbers are those of best.pt, evaluated independently here.
    best_ckpt = torch.load(out / "best.pt", weights_only=True)
    assert best_ckpt["epoch"] == metrics["best_epoch"]
    fresh = type(model)()
    fresh.load_state_dict(best_ckpt["model"])
    expect = evaluate(fresh, task, DataLoader(test, batch_size=len(test)))
    assert metrics["test"].keys() == expect.keys()
    for k in expect:
        assert metrics["test"][k] == pytest.approx(expect[k], abs=TOL[torch.float32]["atol"])

    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "Total params" in printed and "Epoch 3/3" in printed


def test_checkpoints_load_with_weights_only(tmp_path):
    run(tmp_path, "run", epochs=2, optimizer="adam")
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["format"] == "seqtorch.training/1"
    assert last["epoch"] == 2 and len(last["history"]) == 2 and last["world_size"] == 1
    assert set(last) >= {"model", "optimizer", "best", "config", "rng"}
    assert isinstance(last["config"], dict) and last["config"]["optimizer"] == "adam"
    rng = last["rng"][0]
    assert rng["torch"].dtype == torch.uint8 and rng["numpy"]["keys"].numel() == 624
    assert len(rng["python"]["state"]) == 625
    assert load_checkpoint(tmp_path / "run" / "best.pt")["monitor"] == "val_acc"


@pytest.mark.parametrize("kind", ["cls", "reg"])
def test_resume_gives_the_same_history_and_weights(tmp_path, kind):
    straight = run(tmp_path, "straight", epochs=3, kind=kind)[3]
    run(tmp_path, "resumed", epochs=2, kind=kind)
    # Throw the RNGs off: resume must restore them, not rely on the state they happen to be in.
    torch.manual_seed(12345)
    np.random.seed(999)
    resumed = run(tmp_path, "resumed", epochs=3, kind=kind, resume=True)[3]

    def without_seconds(path):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in json.loads(path.read_text())]

    assert without_seconds(tmp_path / "resumed" / "history.json") == without_seconds(
        tmp_path / "straight" / "history.json"
    )
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in ("test", "best_epoch", "best_value", "best_val", "epochs"):
        assert resumed[k] == straight[k], k
    assert resumed["resumed_from_epoch"] == 2 and straight["resumed_from_epoch"] is None


def test_resume_without_checkpoint_starts_fresh(tmp_path, capsys):
    metrics = run(tmp_path, "run", epochs=1, resume=True)[3]
    assert metrics["resumed_from_epoch"] is None and metrics["epochs"] == 1
    assert "starting from scratch" in capsys.readouterr().out


def test_resume_of_a_finished_run_only_tests(tmp_path):
    first = run(tmp_path, "run", epochs=2)[3]
    again = run(tmp_path, "run", epochs=2, resume=True)[3]
    assert again["epochs"] == 2 and again["test"] == first["test"]
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


def test_extra_keys_may_not_clash(tmp_path):
    cfg = TrainConfig(epochs=1, out=str(tmp_path / "o"), progress=False)
    train, val, _ = cls_datasets()
    with setup(cfg) as rt, pytest.raises(ValueError, match="clash"):
        fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=train, val=val,
            extra={"best_epoch": 1})
    assert not (tmp_path / "o").exists()  # rejected before anything was written


@pytest.mark.parametrize("torch_defaults", [False, True], ids=["keras-default", "torch-defaults"])
def test_the_optimizer_follows_the_recipe(tmp_path, torch_defaults):
    metrics = run(tmp_path, "run", epochs=1, torch_defaults=torch_defaults)[3]
    assert metrics["config"]["torch_defaults"] is torch_defaults
    assert math.isfinite(metrics["best_value"])
    # Keras' RMSprop keeps a "velocity"; torch.optim.RMSprop a "square_avg".
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["optimizer"]["state"][0]
    assert ("square_avg" in state) is torch_defaults and ("velocity" in state) is not torch_defaults


def _rewrite_checkpoint_config(path, **changes):
    """Edit the config recorded in a checkpoint (what an older version of seqtorch wrote)."""
    ckpt = torch.load(path, weights_only=True)
    for key, value in changes.items():
        if value is None:
            ckpt["config"].pop(key)
        else:
            ckpt["config"][key] = value
    torch.save(ckpt, path)


@pytest.mark.parametrize("trained_with_torch_defaults", [False, True], ids=["keras", "torch-defaults"])
def test_resume_under_the_other_recipe_is_refused(tmp_path, trained_with_torch_defaults):
    run(tmp_path, "run", epochs=1, torch_defaults=trained_with_torch_defaults)
    before = _snapshot(tmp_path / "run")
    fix = "pass --torch-defaults" if trained_with_torch_defaults else "drop --torch-defaults"
    with pytest.raises(RuntimeError, match=f"last.pt was trained with .*; {fix} to continue it"):
        run(tmp_path, "run", epochs=2, resume=True, torch_defaults=not trained_with_torch_defaults)
    assert _snapshot(tmp_path / "run") == before
    run(tmp_path, "run", epochs=2, resume=True, torch_defaults=trained_with_torch_defaults)
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


@pytest.mark.parametrize("keras_faithful", [False, True], ids=["old-default", "old-keras-faithful"])
def test_resume_reads_the_recipe_of_a_checkpoint_from_before_torch_defaults(tmp_path, capsys, keras_faithful):
    # Such checkpoints record keras_faithful (False unless the flag was given) and no torch_defaults.
    run(tmp_path, "run", epochs=1, torch_defaults=not keras_faithful)
    _rewrite_checkpoint_config(tmp_path / "run" / "last.pt", torch_defaults=None, keras_faithful=keras_faithful)
    with pytest.raises(RuntimeError, match="was trained with"):
        run(tmp_path, "run", epochs=2, resume=True, torch_defaults=keras_faithful)
    capsys.readouterr()
    run(tmp_path, "run", epochs=2, resume=True, torch_defaults=not keras_faithful)
    assert "config differs" not in capsys.readouterr().out  # the old spelling of the same recipe
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 2


# --- evaluation -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_evaluate_does_not_depend_on_batching(batch_size):
    torch.manual_seed(0)
    model = TinyRNNClassifier()
    _, val, _ = cls_datasets()
    x, y = val.tensors
    model.eval()
    with torch.no_grad():
        logits = model(x).squeeze(1)
    expect_loss = nn.functional.binary_cross_entropy_with_logits(logits, y).item()
    expect_acc = ((torch.sigmoid(logits) > 0.5).float() == y).sum().item() / len(y)
    got = evaluate(model, binary_classification_task(), eval_loader(val, batch_size))
    assert got["loss"] == pytest.approx(expect_loss, abs=TOL[torch.float32]["atol"])
    assert got["acc"] == expect_acc
    assert model.training is False  # evaluate restores the mode it found


def test_default_forward_batch_layouts_and_errors():
    model = nn.Linear(3, 1)
    x, y = torch.randn(4, 3), torch.zeros(4)
    out, target = default_forward_batch(model, (x, y))
    assert out.shape == (4,) and target is y  # (B, 1) head reshaped to the (B,) target
    out, _ = default_forward_batch(model, {"x": x, "y": y})
    assert out.shape == (4,)
    with pytest.raises(ValueError, match="expected a batch"):
        default_forward_batch(model, (x,))
    with pytest.raises(ValueError, match="does not match target shape"):
        default_forward_batch(model, (x, torch.zeros(5)))
    with pytest.raises(ValueError, match="'x'"):
        default_forward_batch(model, {"inp": x, "y": y})


def test_task_validation():
    with pytest.raises(ValueError, match="monitor must be one of"):
        binary_classification_task(monitor="val_mae")
    with pytest.raises(ValueError, match="mode must be"):
        regression_task(mode="lowest")
    with pytest.raises(ValueError, match="loss must be one of"):
        regression_task(loss="huber")
    task = Task("t", nn.functional.l1_loss, {}, "val_loss", "min")
    assert task.is_improvement(1.0, None) and not task.is_improvement(float("nan"), None)
    assert task.is_improvement(0.5, 1.0) and not task.is_improvement(1.0, 1.0)


# --- files ----------------------------------------------------------------------------------


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.json"
    atomic_write_json(path, [{"loss": 1.0}])
    before = path.read_bytes()

    def fail_halfway(f):
        f.write(b'[{"loss": 2.')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fail_halfway)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["history.json", "history.json.sha256"]  # no temporary file


def test_atomic_torch_save_failure_leaves_no_file(tmp_path):
    with pytest.raises(Exception):
        atomic_torch_save(tmp_path / "last.pt", {"fn": lambda: 0})  # not picklable
    assert os.listdir(tmp_path) == []


def test_atomic_write_json_is_indented_and_standard(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": float("nan"), "b": np.float32(0.5), "c": torch.tensor(3)})
    text = path.read_text()
    assert text.startswith("{\n  ")
    assert json.loads(text) == {"a": None, "b": 0.5, "c": 3}


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="junk.pt: not a checkpoint: torch.save writes a zip archive"):
        load_checkpoint(tmp_path / "junk.pt")
    atomic_torch_save(tmp_path / "other.pt", {"model": {}})
    with pytest.raises(RuntimeError, match="not a 'seqtorch.training/1' checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_state_round_trip(tmp_path):
    import random

    state = capture_rng_state()
    atomic_torch_save(tmp_path / "rng.pt", state)
    expect = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random(), np.random.randn())
    assert torch.equal(got[0], expect[0]) and np.array_equal(got[1], expect[1])
    assert got[2:] == expect[2:]


def test_plot_history_with_reference_line(tmp_path):
    history = [{"epoch": i + 1, "loss": 1 / (i + 1), "mae": 0.5 - i / 10, "val_loss": 1.1 / (i + 1),
                "val_mae": 0.55 - i / 10, "seconds": 1.0} for i in range(4)]
    plot_history(history, tmp_path / "curves.png", reference_lines=[RefLine("mae", 0.29, "naive")])
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="not plotted"):
        plot_history(history, tmp_path / "x.png", ["loss"], [RefLine("mae", 0.29, "naive")])
    with pytest.raises(ValueError, match="empty"):
        plot_history([], tmp_path / "y.png")


# --- summary --------------------------------------------------------------------------------


def test_model_summary_lists_layers_shapes_and_counts():
    model = TinyRNNClassifier(hidden=6).train()
    x = torch.randn(4, 5, 3)
    text = model_summary(model, binary_classification_task(), (x, torch.zeros(4)))
    gru = 3 * 6 * (3 + 6 + 2)
    assert "rnn (GRU)" in text and "[(4, 5, 6), (1, 4, 6)]" in text and f"{gru:,}" in text
    assert "drop (Dropout)" in text and "head (Linear)" in text and "(4, 1)" in text
    assert f"Total params: {gru + 7:,}" in text and "Non-trainable params: 0" in text
    assert model.training  # the training flag is restored
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_model_summary_depth_and_frozen_params():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), nn.Linear(3, 1))
    model[1].weight.requires_grad_(False)
    text = model_summary(model, regression_task(), (torch.randn(2, 2), torch.zeros(2)), max_depth=2)
    assert "  0.0 (Linear)" in text and "(2, 3)" in text
    assert "Trainable params: 10" in text and "Non-trainable params: 3" in text


# --- optimizers -----------------------------------------------------------------------------


def test_make_optimizer_uses_keras_defaults():
    p = [nn.Parameter(torch.zeros(2))]
    rms = make_optimizer("rmsprop", p, lr=0.01)
    assert isinstance(rms, torch.optim.RMSprop)
    assert rms.defaults["alpha"] == 0.9 and rms.defaults["eps"] == 1e-7 and rms.defaults["lr"] == 0.01
    adam = make_optimizer("adam", p)
    assert adam.defaults["betas"] == (0.9, 0.999) and adam.defaults["eps"] == 1e-7
    assert isinstance(make_optimizer("rmsprop", p, keras_faithful=True), KerasRMSprop)
    assert isinstance(make_optimizer("adam", p, keras_faithful=True), KerasAdam)
    with pytest.raises(ValueError, match="'rmsprop' or 'adam'"):
        make_optimizer("sgd", p)


def _grads(step):
    return torch.tensor([0.3, -1e-4, 2.0], dtype=torch.float64) * (step + 1) ** 0.5


def test_keras_rmsprop_follows_the_keras_formula(tmp_path):
    lr, rho, eps = 0.01, 0.9, 1e-7
    p = nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    opt = KerasRMSprop([p], lr=lr, rho=rho, eps=eps)
    w, v = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    for step in range(4):
        g = _grads(step).numpy()
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        v = rho * v + (1 - rho) * g * g
        w = w - lr * g / np.sqrt(v + eps)
        assert np.allclose(p.detach().numpy(), w, **TOL[torch.float64])
    atomic_torch_save(tmp_path / "o.pt", opt.state_dict())
    assert torch.load(tmp_path / "o.pt", weights_only=True)["state"][0]["velocity"].shape == (3,)


def test_keras_adam_follows_the_keras_formula(tmp_path):
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    p = nn.Parameter(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    opt = KerasAdam([p], lr=lr, betas=(b1, b2), eps=eps)
    w, m, v = np.array([1.0, 2.0, 3.0]), np.zeros(3), np.zeros(3)
    for t in range(1, 5):
        g = _grads(t).numpy()
        p.grad = torch.from_numpy(g.copy())
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        assert np.allclose(p.detach().numpy(), w, **TOL[torch.float64])
    atomic_torch_save(tmp_path / "o.pt", opt.state_dict())
    assert torch.load(tmp_path / "o.pt", weights_only=True)["state"][0]["step"] == 4


def test_keras_and_torch_rmsprop_differ_only_in_epsilon():
    torch.manual_seed(0)
    ps = [nn.Parameter(torch.randn(5, dtype=torch.float64)) for _ in range(2)]
    ps[1].data.copy_(ps[0].data)
    a = KerasRMSprop([ps[0]], lr=0.01, eps=0.0)
    b = torch.optim.RMSprop([ps[1]], lr=0.01, alpha=0.9, eps=0.0)
    for step in range(3):
        g = torch.randn(5, dtype=torch.float64)
        ps[0].grad, ps[1].grad = g.clone(), g.clone()
        a.step(), b.step()
    torch.testing.assert_close(ps[0], ps[1], **TOL[torch.float64])


# --- samplers -------------------------------------------------------------------------------


@pytest.mark.parametrize("n,world", [(10, 1), (10, 3), (2, 4), (0, 2), (7, 2)], ids=lambda v: str(v))
def test_sharded_eval_sampler_partitions_without_padding(n, world):
    shards = [list(ShardedEvalSampler(n, r, world)) for r in range(world)]
    assert sum(shards, []) == list(range(n))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [len(ShardedEvalSampler(n, r, world)) for r in range(world)] == list(map(len, shards))


def test_sharded_eval_sampler_rejects_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        ShardedEvalSampler(10, rank=2, world_size=2)


def test_random_steps_sampler_is_a_function_of_seed_epoch_rank():
    def draw(seed, epoch, rank):
        s = RandomStepsSampler(1000, 50, seed=seed, rank=rank)
        s.set_epoch(epoch)
        return list(s)

    assert draw(0, 1, 0) == draw(0, 1, 0)
    assert len({tuple(draw(0, e, r)) for e in range(3) for r in range(2)} | {tuple(draw(1, 0, 0))}) == 7
    assert all(0 <= i < 1000 for i in draw(0, 0, 0))
    no_repl = RandomStepsSampler(20, 20, replacement=False)
    assert sorted(no_repl) == list(range(20))
    with pytest.raises(ValueError, match="num_samples"):
        RandomStepsSampler(5, 6, replacement=False)


# --- config / CLI ---------------------------------------------------------------------------


@dataclasses.dataclass
class ScriptConfig(TrainConfig):
    hidden: int = 32
    out: str = "runs/script"


def test_common_args_and_config_from_args():
    parser = argparse.ArgumentParser()
    add_common_args(parser, ScriptConfig(epochs=20))
    parser.add_argument("--hidden", type=int, default=ScriptConfig.hidden)
    parser.add_argument("--unrelated", default="x")
    args = parser.parse_args(["--batch-size", "64", "--optimizer", "adam", "--torch-defaults",
                              "--resume", "--hidden", "8", "--no-progress", "--device", "cpu"])
    cfg = config_from_args(ScriptConfig, args)
    assert isinstance(cfg, ScriptConfig)
    assert (cfg.epochs, cfg.batch_size, cfg.optimizer, cfg.hidden) == (20, 64, "adam", 8)
    assert cfg.torch_defaults and cfg.resume and not cfg.progress and cfg.device == "cpu"
    assert cfg.out == "runs/script" and cfg.lr == 1e-3 and cfg.backend == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["--backend", "cuda_magic"])


def test_the_keras_recipe_is_the_default_and_keras_faithful_its_old_spelling(capsys):
    parser = add_common_args(argparse.ArgumentParser())
    assert TrainConfig().torch_defaults is False
    assert config_from_args(TrainConfig, parser.parse_args([])).torch_defaults is False
    assert config_from_args(TrainConfig, parser.parse_args(["--keras-faithful"])) == TrainConfig()
    with pytest.raises(SystemExit):
        parser.parse_args(["--keras-faithful", "--torch-defaults"])
    assert "not allowed with" in capsys.readouterr().err
    help_text = " ".join(parser.format_help().split())
    assert "--torch-defaults use torch's defaults instead of the book's Keras recipe" in help_text
    assert "--keras-faithful accepted for older commands; does nothing" in help_text


def test_config_validation_names_the_flag():
    with pytest.raises(ValueError, match="--optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="--batch-size must be >= 1, got 0"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="--device must be one of"):  # a ValueError and a UserError
        TrainConfig(device="tpu")


# --- guards at the boundary -----------------------------------------------------------------


def test_resume_into_a_different_model_names_the_checkpoint(tmp_path):
    run(tmp_path, "run", epochs=1)
    cfg = TrainConfig(epochs=2, batch_size=8, out=str(tmp_path / "run"), seed=3, resume=True, progress=False)
    train, val, _ = cls_datasets()
    with setup(cfg) as rt, pytest.raises(ResumeError, match="last.pt was trained with another model") as info:
        fit(TinyRNNClassifier(hidden=4), binary_classification_task(), cfg, rt, train=train, val=val)
    assert isinstance(info.value, RuntimeError)  # the base it had before it was a UserError


# --- the output directory: a run is never clobbered, a bad --out fails before training --------


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_a_second_run_into_the_same_out_is_refused(tmp_path):
    run(tmp_path, "run", epochs=2)
    before = _snapshot(tmp_path / "run")
    with pytest.raises(RuntimeError, match="already holds a run") as info:
        run(tmp_path, "run", epochs=1)
    message = str(info.value)
    assert str(tmp_path / "run") in message and "--resume" in message and "--overwrite" in message
    assert _snapshot(tmp_path / "run") == before  # not one byte changed


def test_overwrite_replaces_the_whole_previous_run(tmp_path):
    run(tmp_path, "run", epochs=3)
    (tmp_path / "run" / "notes.txt").write_text("the user's own file")
    # No epoch: fit writes metrics.json only, so any file of the old run left beside it would
    # pass for part of the new one (best.pt, curves.png, history.json, last.pt).
    metrics = run(tmp_path, "run", epochs=0, overwrite=True)[3]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "metrics.json", "metrics.json.sha256", "notes.txt"]
    assert metrics["epochs"] == 0 and metrics["best_epoch"] is None
    run(tmp_path, "run", epochs=1, overwrite=True)
    assert len(json.loads((tmp_path / "run" / "history.json").read_text())) == 1


def test_resume_without_last_pt_does_not_mix_with_the_other_files(tmp_path):
    run(tmp_path, "run", epochs=1)
    (tmp_path / "run" / "last.pt").unlink()
    before = _snapshot(tmp_path / "run")
    with pytest.raises(RuntimeError, match="no last.pt") as info:
        run(tmp_path, "run", epochs=2, resume=True)
    assert "--overwrite" in str(info.value)
    assert _snapshot(tmp_path / "run") == before


def test_resume_and_overwrite_exclude_each_other():
    with pytest.raises(ValueError, match="resume.*overwrite"):
        TrainConfig(resume=True, overwrite=True)


def test_overwrite_is_a_config_field_and_a_flag():
    parser = add_common_args(argparse.ArgumentParser())
    assert TrainConfig().overwrite is False
    assert config_from_args(TrainConfig, parser.parse_args(["--overwrite"])).overwrite is True
    assert config_from_args(TrainConfig, parser.parse_args([])).overwrite is False
    help_text = " ".join(parser.format_help().split())
    assert "--overwrite" in help_text and "deleted" in help_text


@pytest.mark.parametrize("where", ["read_only", "inside_read_only", "under_a_file"])
def test_unwritable_out_is_refused_before_training(tmp_path, where):
    if where == "under_a_file":
        (tmp_path / "a_file").write_text("x")
        out, directory = tmp_path / "a_file" / "run", contextlib.nullcontext()
    elif where == "read_only":
        out = tmp_path / "ro"
        directory = read_only_dir(out)
    else:
        out = tmp_path / "ro" / "run"
        directory = read_only_dir(out.parent)
    train, val, _ = cls_datasets()
    started = []

    def make_train_loader(epoch, rank, world_size):
        started.append(epoch)
        return DataLoader(train, batch_size=8)

    cfg = TrainConfig(epochs=1, batch_size=8, out=str(out), progress=False)
    with directory, setup(cfg) as rt:
        with pytest.raises(RuntimeError, match="not writable") as info:
            fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=make_train_loader,
                val=val)
    assert str(out) in str(info.value)
    assert started == []  # refused before the first epoch, not after it


def test_atomic_write_is_fsynced_and_cleans_the_entry_s_stale_temps(tmp_path, monkeypatch):
    killed = leftover_temp(tmp_path, "last.pt", age_s=3600, tag="killed00")  # a run killed mid-write
    live = leftover_temp(tmp_path, "last.pt", age_s=3600, tag="writing0")
    other = leftover_temp(tmp_path, "notes.txt", age_s=3600, tag="killed01")
    sync = SyncRecorder(monkeypatch)
    with held_by_a_live_writer(live):
        atomic_write_bytes(tmp_path / "last.pt", b"new")
        assert not killed.exists() and live.exists() and other.exists()
    assert sync.synced_before_rename(tmp_path / "last.pt")


def test_fit_rejects_unusable_data(tmp_path):
    cfg = TrainConfig(epochs=1, out=str(tmp_path / "o"), progress=False)
    train, val, _ = cls_datasets()

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter([])

    with setup(cfg) as rt:
        with pytest.raises(TypeError, match="IterableDataset"):
            fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=Stream(), val=val)
        with pytest.raises(TypeError, match="map-style Dataset with __len__"):
            fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=train, val=Stream())
        with pytest.raises(RuntimeError, match="yielded no batches"):
            fit(TinyRNNClassifier(), binary_classification_task(), cfg, rt, train=lambda e, r, w: [], val=val)


def test_setup_single_process_and_device_names():
    from seqtorch.training import resolve_device

    rt = setup(TrainConfig(device="cpu", seed=11))
    assert (rt.rank, rt.world_size, rt.distributed, rt.is_main) == (0, 1, False, True)
    assert rt.device == torch.device("cpu")
    with rt.main_first():  # no process group: just runs the block
        pass
    a = torch.rand(2)
    setup(TrainConfig(device="cpu", seed=11))
    assert torch.equal(torch.rand(2), a)  # seeded from cfg.seed
    with pytest.raises(ValueError, match="device must be"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            resolve_device("cuda")
