"""Every listing in examples/ runs, in the book's order, with its small setting (``--small``): the IMDB ones
on a tiny archive in the official format, the Jena ones on the synthetic file they write when the real
one is absent. Each returns what it computed; the numbers of a --small run mean little, so the checks are
on what each listing promises (the shapes, Keras' parameter counts, the baseline's two forms, a history per
epoch, the plots).
"""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

import pytest

from support.imdb_fixture import write_aclimdb_tarball

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LISTINGS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
# The chapter's order: 6.19/6.20, 6.21, 6.2.1, 6.22-6.24, 6.27, then section 6.3's models.
BOOK_ORDER = ["rnn_pseudocode", "numpy_rnn", "recurrent_layer_summaries", "imdb_simplernn", "imdb_lstm",
              "jena_baseline", "jena_dense", "jena_gru", "jena_gru_dropout", "jena_stacked_gru",
              "jena_bidirectional_gru"]


@pytest.fixture(autouse=True)
def _examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))  # `import book`, as `python examples/x.py` allows


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: the Jena listings' synthetic file is written once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run(tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("SEQTORCH_DATA", str(shared_cache))

    def run(name: str, *argv: str):
        listing = runpy.run_path(str(EXAMPLES / name))
        return listing["main"](list(argv)) if argv else listing["main"]()
    return run


def test_the_listings_are_numbered_in_the_books_order():
    assert [path.stem.split("_", 1)[1] for path in LISTINGS] == BOOK_ORDER
    assert [int(path.stem[:2]) for path in LISTINGS] == list(range(1, len(LISTINGS) + 1))
    for path in LISTINGS:  # each says which listings it is, and how to run it
        text = path.read_text()
        assert text.startswith('"""Listing') or text.startswith('"""Section'), path
        assert f"python examples/{path.name}" in text


def test_rnn_pseudocode(run):
    assert tuple(run("01_rnn_pseudocode.py").shape) == (100, 64)


def test_numpy_rnn_and_seqtorch_agree(run):
    assert run("02_numpy_rnn.py") < 1e-12


def test_layer_summaries_have_keras_parameter_counts(run, capsys):
    run("03_recurrent_layer_summaries.py")  # asserts each model's total is the book's
    out = capsys.readouterr().out
    assert "Total params: 322,080" in out and "Total params: 328,320" in out


@pytest.mark.parametrize("name", ["04_imdb_simplernn.py", "05_imdb_lstm.py"])
def test_imdb_listings(run, tmp_path, name):
    data = write_aclimdb_tarball(tmp_path / "aclImdb_v1.tar.gz", train=40, test=10)
    history = run(name, "--small", "--data", str(data), "--out", str(tmp_path / "out"))
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(0 <= h["val_acc"] <= 1 and math.isfinite(h["loss"]) for h in history)
    assert len(list((tmp_path / "out").glob("imdb_*.png"))) == 1


def test_jena_baseline_without_the_real_file(run, tmp_path, shared_cache, capsys):
    mae = run("06_jena_baseline.py", "--small", "--out", str(tmp_path))
    out = capsys.readouterr().out
    assert (shared_cache / "jena" / "synthetic-6000.csv").is_file()
    assert f"validation MAE {mae:.4f}" in out and "degrees Celsius" in out


@pytest.mark.parametrize("name", ["07_jena_dense.py", "08_jena_gru.py", "09_jena_gru_dropout.py",
                                  "10_jena_stacked_gru.py", "11_jena_bidirectional_gru.py"])
def test_jena_models(run, tmp_path, name):
    history = run(name, "--small", "--out", str(tmp_path))
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(math.isfinite(h["val_mae"]) and h["val_mae"] > 0 for h in history)
    assert (tmp_path / f"{Path(name).stem.split('_', 1)[1]}.png").is_file()


def test_a_listing_from_the_shell(tmp_path):
    """Run as a reader does, from the repository root: `python examples/...` (imports book.py beside it)."""
    import subprocess

    done = subprocess.run([sys.executable, str(EXAMPLES / "02_numpy_rnn.py")], capture_output=True, text=True,
                          cwd=EXAMPLES.parent, timeout=120)
    assert done.returncode == 0 and "max |difference|" in done.stdout, done.stderr
