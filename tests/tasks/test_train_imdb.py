"""Tests for the IMDB models (seqtorch.models.imdb) and scripts/train_imdb.py end to end."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOL
from support.file_faults import read_only_dir
from support.imdb_fixture import write_aclimdb_tarball

from seqtorch.models.imdb import DenseClassifier, ImdbModelConfig, RNNClassifier, build_model

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_imdb.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_imdb", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------------------------
# Models


@pytest.mark.parametrize(
    "kind, params, gates",
    # The book's Keras summaries (GRU with reset_after=False): one bias per gate, as single_bias trains.
    [("simplernn", 322_113, 1), ("lstm", 328_353, 4), ("gru", 326_273, 3)],
)
def test_book_model_parameter_counts(kind, params, gates):
    model = build_model(ImdbModelConfig(kind=kind, keras_faithful=True))
    assert sum(p.numel() for p in model.parameters()) == params
    # torch's defaults train a second bias b_hh (and the GRU is the reset-after one).
    torch_defaults = build_model(ImdbModelConfig(kind=kind))
    assert sum(p.numel() for p in torch_defaults.parameters()) == params + gates * 32


def test_dense_baseline_matches_listing_6_7():
    # Embedding(10000, 8, input_length=20) -> Flatten -> Dense(1): 80,000 + 161 parameters.
    model = build_model(ImdbModelConfig(kind="dense", maxlen=20, keras_faithful=True))
    assert isinstance(model, DenseClassifier)
    assert sum(p.numel() for p in model.parameters()) == 80_161
    assert model(torch.randint(0, 10000, (3, 20))).shape == (3,)


def test_keras_faithful_initializers():
    torch.manual_seed(0)
    model = build_model(ImdbModelConfig(kind="gru", keras_faithful=True))
    emb = model.embedding.weight
    assert emb.abs().max() <= 0.05 and emb.std() > 0.02  # uniform(-0.05, 0.05), not N(0, 1)
    assert torch.count_nonzero(model.head.bias) == 0
    bound = (6 / (32 + 1)) ** 0.5  # glorot-uniform limit for a (1, 32) kernel
    assert model.head.weight.abs().max() <= bound
    assert model.rnn.init == "keras" and model.rnn.reset_after is False

    plain = build_model(ImdbModelConfig(kind="gru"))
    assert plain.embedding.weight.std() > 0.5  # torch's N(0, 1)
    assert plain.rnn.init == "torch" and plain.rnn.reset_after is True


@pytest.mark.parametrize("kind", ["simplernn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_lengths_make_post_padding_irrelevant(kind, bidirectional):
    torch.manual_seed(0)
    model = RNNClassifier(kind, num_words=30, embed_dim=6, hidden=5, layers=2,
                          bidirectional=bidirectional, use_lengths=True, backend="reference").eval()
    tokens = torch.randint(1, 30, (3, 7))
    lengths = torch.tensor([7, 3, 1])
    other = tokens.clone()
    other[1, 3:] = 0  # change only what lies past each review's length
    other[2, 1:] = 7
    torch.testing.assert_close(model(tokens, lengths), model(other, lengths))
    # The same rows given alone (unpadded) give the same logits.
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(model(tokens[i:i + 1, :n], lengths[i:i + 1]),
                                   model(tokens, lengths)[i:i + 1])
    # Without use_lengths the padding is read (the Keras / 'pre' padding behaviour).
    model.use_lengths = False
    assert not torch.allclose(model(tokens, lengths), model(other, lengths))


@pytest.mark.parametrize("kind", ["simplernn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_a_mask_makes_pre_padding_irrelevant(kind, bidirectional):
    """The book's pre padding (words last), skipped with a mask: each review gives what it gives unpadded."""
    torch.manual_seed(0)
    model = RNNClassifier(kind, num_words=30, embed_dim=6, hidden=5, layers=2, bidirectional=bidirectional,
                          use_mask=True, backend="reference").eval()
    tokens = torch.randint(1, 30, (3, 7))
    lengths = torch.tensor([7, 4, 1])
    other = tokens.clone()
    other[1, :3] = 0  # change only the padding before each review's words
    other[2, :6] = 7
    torch.testing.assert_close(model(tokens, lengths), model(other, lengths))
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(model(tokens[i:i + 1, 7 - n:], lengths[i:i + 1]), model(tokens, lengths)[i:i + 1])


def test_model_input_checks():
    model = RNNClassifier("lstm", num_words=30, embed_dim=4, hidden=3)
    with pytest.raises(ValueError, match=r"\(B, T\), got \(2, 3, 4\)"):
        model(torch.zeros(2, 3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="maxlen=20"):
        DenseClassifier(30, 8, maxlen=20)(torch.zeros(2, 19, dtype=torch.long))
    with pytest.raises(ValueError, match="model kind"):
        build_model(ImdbModelConfig(kind="transformer"))
    with pytest.raises(ValueError, match="GRU only"):
        build_model(ImdbModelConfig(kind="lstm", reset_after=False))


# ----------------------------------------------------------------------------------------------
# The script, end to end on a tiny aclImdb tarball


@pytest.fixture
def tiny_aclimdb(tmp_path, monkeypatch) -> Path:
    """An aclImdb-format tarball: 80 train + 40 test reviews per label, sentiment words planted."""
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    return write_aclimdb_tarball(tmp_path / "aclImdb_v1.tar.gz", train=80, test=40, seed=0)


OUTPUTS = ["history.json", "metrics.json", "curves.png", "best.pt", "last.pt"]


@pytest.mark.parametrize(
    "extra_args",
    [
        ["--model", "lstm"],
        ["--model", "gru", "--padding", "post", "--bidirectional", "--layers", "2"],
        ["--model", "simplernn", "--recurrent-dropout", "0.2", "--input-dropout", "0.1"],
        ["--model", "dense"],
        ["--model", "lstm", "--torch-nn"],
        ["--model", "gru", "--torch-defaults", "--torch-nn"],
    ],
    ids=["lstm", "gru-post-bi-2", "simplernn-dropout", "dense", "lstm-torch-nn", "gru-torch-defaults-torch-nn"],
)
def test_script_one_epoch_writes_every_output(tiny_aclimdb, tmp_path, extra_args):
    out = tmp_path / "run"
    metrics = load_script().main([
        "--data", str(tiny_aclimdb), "--epochs", "1", "--batch-size", "8", "--maxlen", "24",
        "--num-words", "40", "--hidden", "6", "--out", str(out), "--backend", "reference",
        "--device", "cpu", "--no-progress", *extra_args,
    ])
    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and {"loss", "acc", "val_loss", "val_acc"} <= set(history[0])
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["dataset"]["train"] == 128 and on_disk["dataset"]["val"] == 32  # 20% of 160
    assert on_disk["dataset"]["test"] == 80
    assert on_disk["config"]["maxlen"] == 24 and on_disk["model_config"]["num_words"] == 40
    assert on_disk["model_config"]["use_lengths"] == ("post" in extra_args)
    assert on_disk["model_config"]["keras_faithful"] == ("--torch-defaults" not in extra_args)
    assert 0.0 <= metrics["test"]["acc"] <= 1.0
    best = torch.load(out / "best.pt", weights_only=True)
    model = build_model(ImdbModelConfig(**on_disk["model_config"]))
    model.load_state_dict(best["model"])  # the checkpoint rebuilds from the recorded config


@pytest.mark.parametrize("kind, keras_faithful", [("simplernn", True), ("lstm", True), ("simplernn", False),
                                                  ("lstm", False), ("gru", False)],
                         ids=["simplernn-keras", "lstm-keras", "simplernn-torch", "lstm-torch", "gru-torch"])
def test_torch_nn_twin_starts_from_the_same_weights_and_gives_the_same_logits(kind, keras_faithful):
    options = dict(kind=kind, num_words=50, hidden=7, layers=2, bidirectional=True, keras_faithful=keras_faithful)
    torch.manual_seed(0)
    ours = build_model(ImdbModelConfig(**options))
    torch.manual_seed(0)
    theirs = build_model(ImdbModelConfig(**options, torch_nn=True))
    for name, value in ours.state_dict().items():  # the same initial weights, head included
        torch.testing.assert_close(theirs.state_dict()[name.replace("rnn.", "rnn.layer.", 1)], value,
                                   rtol=0, atol=0)
    assert isinstance(theirs.rnn.layer, (torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU))
    tokens = torch.randint(0, 50, (4, 9))
    torch.testing.assert_close(theirs(tokens), ours(tokens), **TOL[torch.float32])


@pytest.mark.parametrize("options", [dict(kind="gru", keras_faithful=True), dict(kind="lstm", recurrent_dropout=0.2),
                                     dict(kind="lstm", input_dropout=0.1)],
                         ids=["gru-reset-before", "recurrent-dropout", "input-dropout"])
def test_torch_nn_twin_refuses_what_torch_nn_lacks(options):
    with pytest.raises(ValueError, match="torch.nn has no equivalent"):
        build_model(ImdbModelConfig(torch_nn=True, **options))


@pytest.mark.parametrize("flags, keras", [([], True), (["--keras-faithful"], True), (["--torch-defaults"], False)],
                         ids=["default", "keras-faithful-alias", "torch-defaults"])
def test_script_trains_the_books_recipe_unless_told_otherwise(tiny_aclimdb, tmp_path, flags, keras):
    out = tmp_path / "run"
    load_script().main([
        "--data", str(tiny_aclimdb), "--epochs", "1", "--batch-size", "8", "--maxlen", "24",
        "--num-words", "40", "--hidden", "6", "--model", "gru", "--out", str(out),
        "--backend", "reference", "--device", "cpu", "--no-progress", *flags,
    ])
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["config"]["torch_defaults"] is not keras
    assert on_disk["model_config"]["keras_faithful"] is keras
    model = build_model(ImdbModelConfig(**on_disk["model_config"]))
    # The book's GRU is Keras 2's: reset before the recurrent product, one bias per gate.
    assert model.rnn.reset_after is not keras and model.rnn.single_bias is keras
    last = torch.load(out / "last.pt", weights_only=True)
    assert bool((last["model"]["rnn.bias_hh_l0"] == 0).all()) is keras  # torch's b_hh is drawn and trained
    # Keras' RMSprop keeps a "velocity"; torch.optim.RMSprop a "square_avg".
    state = next(iter(last["optimizer"]["state"].values()))
    assert ("velocity" in state) is keras and ("square_avg" in state) is not keras


def test_keras_faithful_is_an_accepted_alias_of_the_default():
    script = load_script()
    assert script.parse_config(["--keras-faithful"]) == script.parse_config([])


def test_torch_defaults_and_keras_faithful_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as info:
        load_script().parse_config(["--torch-defaults", "--keras-faithful"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_torch_nn_gru_needs_torch_defaults(capsys):
    script = load_script()
    with pytest.raises(SystemExit) as info:
        script.parse_config(["--model", "gru", "--torch-nn"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--torch-defaults" in err and "reset_after=False" in err
    assert script.parse_config(["--model", "gru", "--torch-nn", "--torch-defaults"]).torch_nn


def test_script_learns_and_resumes(tiny_aclimdb, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(tiny_aclimdb), "--batch-size", "8", "--maxlen", "24", "--num-words", "60",
            "--model", "gru", "--hidden", "8", "--lr", "0.01", "--out", str(out),
            "--backend", "reference", "--device", "cpu", "--no-progress"]
    script = load_script()
    script.main(args + ["--epochs", "2"])
    metrics = script.main(args + ["--epochs", "5", "--resume"])
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 6))
    assert metrics["resumed_from_epoch"] == 2
    # One planted word decides each review: the model must find it.
    assert history[-1]["acc"] > 0.9 and metrics["test"]["acc"] > 0.85


def test_script_rejects_bad_val_split(tiny_aclimdb, tmp_path):
    with pytest.raises(SystemExit):
        load_script().main(["--data", str(tiny_aclimdb), "--val-split", "0", "--out",
                            str(tmp_path / "x")])


def test_script_refuses_to_train_over_a_run(tiny_aclimdb, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(tiny_aclimdb), "--epochs", "1", "--batch-size", "8", "--maxlen", "24",
            "--num-words", "40", "--hidden", "6", "--out", str(out), "--backend", "reference",
            "--device", "cpu", "--no-progress"]
    script = load_script()
    script.main(args)
    before = {name: (out / name).read_bytes() for name in OUTPUTS}
    with pytest.raises(RuntimeError, match=r"already holds a run.*--resume.*--overwrite"):
        script.main(args + ["--epochs", "2"])
    assert {name: (out / name).read_bytes() for name in OUTPUTS} == before
    script.main(args + ["--epochs", "2", "--overwrite"])
    assert len(json.loads((out / "history.json").read_text())) == 2


def test_script_exits_non_zero_with_the_reason(tmp_path):
    """From the command line: one clear line and a failing exit status, before any data is read."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")  # what a finished run leaves, at the least
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(tmp_path / "no-such-data"), "--out", str(out),
         "--device", "cpu"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode != 0
    assert "already holds a run" in done.stderr and str(out) in done.stderr
    assert "--overwrite" in done.stderr and "Traceback" not in done.stderr
    assert (out / "metrics.json").read_text() == "{}"


def test_script_refuses_a_read_only_out_before_reading_the_data(tmp_path):
    with read_only_dir(tmp_path / "ro") as ro:
        # The data path does not exist either: the --out check must come first.
        with pytest.raises(RuntimeError, match="not writable") as info:
            load_script().main(["--data", str(tmp_path / "no-such-data"), "--out", str(ro / "run"),
                                "--device", "cpu", "--no-progress"])
    assert str(ro / "run") in str(info.value)
