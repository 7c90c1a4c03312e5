"""The Jena models and scripts/train_jena.py end to end on a small synthetic file."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from support.file_faults import read_only_dir
from support.jena_fixture import write_jena_csv
from seqtorch.data.jena import JenaChecksumWarning, Splits, WindowSpec, load_jena, naive_mae, prepare_jena
from seqtorch.models.jena import MODEL_NAMES, DenseRegressor, RecurrentRegressor, build_jena_model
from seqtorch.training import evaluate, regression_task

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_jena.py"
# Small but book-shaped: windows of 4 rows (24 rows, one in 6), 12 rows ahead.
# One evaluation batch of 448 windows: the mean MAE does not depend on it, the run time does.
SMALL = ["--lookback", "24", "--step", "6", "--delay", "12", "--train-end", "1000",
         "--val-end", "1500", "--batch-size", "32", "--eval-batch-size", "448",
         "--steps-per-epoch", "3", "--no-progress", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    warnings.filterwarnings("ignore", category=JenaChecksumWarning)


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("jena") / "jena_climate_2009_2016.csv"
    return write_jena_csv(path, 2_000, seed=2, gaps={400: 5}, sentinel_rows=(77,)).path


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_jena", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the config's annotations through it
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("keras_faithful", [False, True], ids=["torch_init", "keras"])
def test_models_map_windows_to_one_prediction(name, keras_faithful):
    torch.manual_seed(0)
    model = build_jena_model(name, 14, timesteps=5, keras_faithful=keras_faithful)
    x = torch.randn(3, 5, 14)
    y = model(x)
    assert y.shape == (3,) and torch.isfinite(y).all()
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)  # no dropout in eval
    with pytest.raises(ValueError, match=r"expected input \(B, "):
        model(torch.randn(3, 5, 13))


def test_models_follow_the_book_layers():
    dense = build_jena_model("dense", 14, 240)
    assert isinstance(dense, DenseRegressor)
    # Flatten (240 * 14) -> Dense(32) -> Dense(1): Keras reports 107,585 parameters.
    assert sum(p.numel() for p in dense.parameters()) == 240 * 14 * 32 + 32 + 33 == 107_585
    stacked = build_jena_model("gru_stacked", keras_faithful=True)
    first, second = stacked.recurrent
    assert (first.hidden_size, second.input_size, second.hidden_size) == (32, 32, 64)
    assert (first.input_dropout, first.recurrent_dropout, first.activation) == (0.1, 0.5, "tanh")
    assert (second.input_dropout, second.recurrent_dropout, second.activation) == (0.1, 0.5, "relu")
    assert not first.reset_after and first.init == "keras"
    assert build_jena_model("gru").recurrent[0].reset_after  # torch's GRU unless keras_faithful
    drop = build_jena_model("lstm_dropout").recurrent[0]
    assert (drop.input_dropout, drop.recurrent_dropout) == (0.2, 0.2)
    bi = build_jena_model("bigru")
    assert isinstance(bi, RecurrentRegressor) and bi.recurrent[0].bidirectional and bi.out.in_features == 64
    faithful = build_jena_model("dense", 14, 240, keras_faithful=True)
    assert (faithful.hidden.bias == 0).all() and (faithful.out.bias == 0).all()
    bound = (6 / (240 * 14 + 32)) ** 0.5  # glorot uniform
    assert faithful.hidden.weight.abs().max() <= bound
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        build_jena_model("rnn")


def test_bidirectional_head_reads_both_final_states():
    torch.manual_seed(0)
    model = build_jena_model("bigru").eval()
    x = torch.randn(2, 6, 14)
    out, h_n = model.recurrent[0](x)
    # Keras' Bidirectional(GRU) concatenates the forward state after the last step and the
    # backward state after the first step.
    final = torch.cat([out[:, -1, :32], out[:, 0, 32:]], dim=-1)
    torch.testing.assert_close(model(x), model.out(final).squeeze(-1), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- script


def test_script_writes_every_output(script, csv, tmp_path):
    out = tmp_path / "run"
    metrics = script.main(["--data", str(csv), "--model", "gru", "--epochs", "2", "--out", str(out),
                           *SMALL])
    for name in ("history.json", "metrics.json", "curves.png", "best.pt", "last.pt"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite([h["mae"], h["val_mae"]]).all() for h in history)
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    table = load_jena(csv)
    prep = prepare_jena(table.values, WindowSpec(24, 6, 12), Splits(1000, 1500), 32)
    assert on_disk["baseline_val_mae"] == pytest.approx(naive_mae(prep.data, prep.val_batches, prep.spec), abs=1e-12)
    assert on_disk["baseline_val_mae_celsius"] == pytest.approx(on_disk["baseline_val_mae"] * prep.std[1], abs=1e-12)
    best = min(h["val_mae"] for h in history)
    assert on_disk["best_val"]["val_mae"] == best
    assert on_disk["best_val_mae_celsius"] == pytest.approx(best * prep.std[1], abs=1e-12)
    assert on_disk["test_mae_celsius"] == pytest.approx(on_disk["test"]["mae"] * prep.std[1], abs=1e-12)
    assert (on_disk["val_batches"], on_disk["test_batches"]) == (14, 14)
    assert on_disk["data"]["rows"] == 2_000 and on_disk["data"]["sentinels"]["wv (m/s)"] == 1
    assert on_disk["config"]["model"] == "gru" and on_disk["config"]["steps_per_epoch"] == 3
    assert on_disk["timings"]["load_seconds"] > 0 and on_disk["train_seconds"] > 0
    best_ckpt = torch.load(out / "best.pt", weights_only=True)
    model = build_jena_model("gru", keras_faithful=True)  # the script's default recipe
    model.load_state_dict(best_ckpt["model"])  # strict: the checkpoint is the model's


@pytest.mark.parametrize("flags, keras", [([], True), (["--keras-faithful"], True), (["--torch-defaults"], False)],
                         ids=["default", "keras-faithful-alias", "torch-defaults"])
def test_script_trains_the_books_recipe_unless_told_otherwise(script, csv, tmp_path, flags, keras):
    out = tmp_path / "run"
    script.main(["--data", str(csv), "--model", "gru", "--epochs", "1", "--out", str(out), *SMALL, *flags])
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["config"]["torch_defaults"] is not keras
    # The trained weights give the recorded validation MAE only in the model of the recipe they
    # were trained with (the book's GRU resets before the recurrent product, torch's after it).
    prep = prepare_jena(load_jena(csv).values, WindowSpec(24, 6, 12), Splits(1000, 1500), 32)
    val = DataLoader(prep.eval_dataset("val"), batch_size=448)
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    maes = {}
    for recipe in (True, False):
        model = build_jena_model("gru", keras_faithful=recipe)
        model.load_state_dict(best)
        maes[recipe] = evaluate(model, regression_task(loss="mae"), val)["mae"]
    assert maes[keras] == pytest.approx(on_disk["best_val"]["val_mae"], abs=1e-6)
    assert maes[not keras] != pytest.approx(on_disk["best_val"]["val_mae"], abs=1e-4)
    assert bool((best["recurrent.0.bias_hh_l0"] == 0).all()) is keras  # one bias per gate, as Keras
    # Keras' RMSprop keeps a "velocity"; torch.optim.RMSprop a "square_avg".
    state = torch.load(out / "last.pt", weights_only=True)["optimizer"]["state"][0]
    assert ("velocity" in state) is keras and ("square_avg" in state) is not keras


def test_naive_writes_the_baseline_only(script, csv, tmp_path):
    out = tmp_path / "naive"
    metrics = script.main(["--data", str(csv), "--model", "naive", "--out", str(out), "--clean", *SMALL])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.json.sha256"]
    table = load_jena(csv, clean=True)
    prep = prepare_jena(table.values, WindowSpec(24, 6, 12), Splits(1000, 1500), 32)
    assert metrics["baseline_test_mae"] == pytest.approx(naive_mae(prep.data, prep.test_batches, prep.spec), abs=1e-12)
    assert metrics["data"]["cleaned"] and metrics["config"]["clean"]


def test_resume_reproduces_an_uninterrupted_run(script, csv, tmp_path):
    args = ["--data", str(csv), "--model", "gru_dropout", *SMALL]
    script.main([*args, "--epochs", "2", "--out", str(tmp_path / "straight")])
    script.main([*args, "--epochs", "1", "--out", str(tmp_path / "split")])
    script.main([*args, "--epochs", "2", "--out", str(tmp_path / "split"), "--resume"])
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    split = json.loads((tmp_path / "split" / "history.json").read_text())
    for a, b in zip(straight, split, strict=True):
        assert (a["mae"], a["val_mae"]) == (b["mae"], b["val_mae"])
    last_a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    last_b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)["model"]
    for key in last_a:
        torch.testing.assert_close(last_a[key], last_b[key], rtol=0, atol=0)


# Slow: the script under torchrun and once alone (10 s on 2 cores); by default
# tests/training/test_training_ddp.py checks 2 ranks against one process with the global batch.
@pytest.mark.slow
def test_ddp_two_ranks_match_one_process_with_the_global_batch(script, csv, tmp_path):
    """torchrun, 2 CPU ranks x 16 == 1 process x 32: same windows, same averaged gradients."""
    args = ["--data", str(csv), "--model", "gru", "--epochs", "2", *SMALL]
    script.main([*args, "--out", str(tmp_path / "single")])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(SCRIPT), *args, "--batch-size", "16", "--out", str(tmp_path / "ddp")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = json.loads((tmp_path / "single" / "history.json").read_text())
    ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    for a, b in zip(single, ddp, strict=True):
        assert a["mae"] == pytest.approx(b["mae"], abs=1e-6)
        assert a["val_mae"] == pytest.approx(b["val_mae"], abs=1e-6)
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["val_batches"] == 14


def test_bad_options_are_rejected(script, csv, tmp_path):
    with pytest.raises(ValueError, match="multiple of step"):
        script.main(["--data", str(csv), "--lookback", "25", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        script.main(["--data", str(csv), "--model", "transformer"])


def test_script_refuses_to_write_over_a_run(csv, tmp_path):
    """A second run into one --out fails from the command line, unless --overwrite."""
    out = tmp_path / "run"
    command = [sys.executable, str(SCRIPT), "--data", str(csv), "--model", "naive", "--out",
               str(out), *SMALL]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    before = (out / "metrics.json").read_bytes()
    second = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode != 0
    assert "already holds a run" in second.stderr and str(out) in second.stderr
    assert "--overwrite" in second.stderr and "Traceback" not in second.stderr
    assert (out / "metrics.json").read_bytes() == before
    third = subprocess.run(command + ["--overwrite"], capture_output=True, text=True, timeout=120,
                           env=env)
    assert third.returncode == 0, third.stderr[-3000:]


def test_script_refuses_to_mix_runs(script, csv, tmp_path):
    out = tmp_path / "run"
    script.main(["--data", str(csv), "--model", "naive", "--out", str(out), *SMALL])
    with pytest.raises(RuntimeError, match="already holds a run"):
        script.main(["--data", str(csv), "--model", "gru", "--out", str(out), *SMALL])
    with pytest.raises(RuntimeError, match="no last.pt"):  # a baseline is nothing to resume
        script.main(["--data", str(csv), "--model", "gru", "--out", str(out), "--resume", *SMALL])
    # The baseline trains nothing: --resume would only put its metrics.json beside another run's.
    with pytest.raises(ValueError, match="naive"):
        script.main(["--data", str(csv), "--model", "naive", "--out", str(out), "--resume", *SMALL])
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics.json.sha256"]


def test_script_refuses_a_read_only_out_before_reading_the_data(script, tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        with pytest.raises(RuntimeError, match="not writable") as info:
            script.main(["--data", str(tmp_path / "missing.csv"), "--model", "gru", "--out",
                         str(ro / "run"), *SMALL])
    assert str(ro / "run") in str(info.value)
