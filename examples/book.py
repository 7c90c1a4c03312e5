"""What the chapter's listings share, in PyTorch: Keras' ``model.fit`` and the data the listings read.

The listings beside this file stay as short as the book's because this one holds what Keras gives the
book in a call:

* :func:`fit` is ``model.fit(...)``: seqtorch.training's epoch and evaluation steps with Keras' RMSprop,
  a line per epoch, and the history as a list of dicts (``loss``, ``acc``, ``val_loss``...);
* :func:`imdb` is listing 6.22's ``imdb.load_data(num_words=10000)`` and ``pad_sequences(maxlen=500)``;
* :func:`jena` is listings 6.28 to 6.34 (read the CSV, normalize, the generators), on the real file when
  there is one, else on a small synthetic file in its exact format;
* :class:`KerasOutput` makes a seqtorch layer return what a Keras recurrent layer returns, and
  :func:`keras_initializers` gives the Embedding and Dense layers Keras' initial weights;
* :func:`arguments` gives every listing ``--small`` (seconds instead of minutes), ``--data``, ``--epochs``
  and ``--out`` (where the plots go).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset, default_collate

from seqtorch.data.download import cache_dir
from seqtorch.data.imdb import load_imdb
from seqtorch.data.jena import (
    JENA_FILENAME, JenaChecksumWarning, Splits, WindowSpec, load_jena, naive_mae, prepare_jena,
)
from seqtorch.training import RefLine, Runtime, evaluate, make_optimizer, plot_history, train_one_epoch
from seqtorch.training.loop import format_epoch_line

ROOT = Path(__file__).resolve().parents[1]
# Where `make train` finds IMDB on this project's machines; elsewhere the official archive is downloaded.
LOCAL_IMDB = ROOT.parent / "shared" / "datasets" / "imdb"


def arguments(doc: str, argv: list[str] | None, *, epochs: int, data: str) -> argparse.Namespace:
    """The listings' flags; ``data`` is ``"imdb"`` or ``"jena"`` (what ``--data`` names)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true",
                        help="a setting that runs in seconds: fewer, shorter samples and 2 epochs (the "
                             "numbers then mean little)")
    where = ("aclImdb_v1.tar.gz, an aclImdb/ folder or imdb.npz (default: ../shared/datasets/imdb if "
             "there, else the official archive, downloaded)" if data == "imdb" else
             f"{JENA_FILENAME} or its .zip (default: the downloaded copy in seqtorch's cache if there, "
             f"else a small synthetic file in its format)")
    parser.add_argument("--data", default=None, help=where)
    parser.add_argument("--epochs", type=int, default=None, help=f"default {epochs} (the book's); 2 with --small")
    parser.add_argument("--out", default="runs/examples", help="folder for the plots (default %(default)s)")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (2 if args.small else epochs)
    args.out = Path(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    return args


class KerasOutput(nn.Module):
    """A seqtorch recurrent layer (batch first) returning what Keras' returns: with ``return_sequences`` every
    step's output ``(batch, timesteps, units)``, else the last one, ``(batch, units)``; for a bidirectional
    layer the forward direction's last output beside the backward direction's (its output at step 0), as
    Keras' ``Bidirectional`` concatenates them."""

    def __init__(self, layer: nn.Module, return_sequences: bool = False):
        super().__init__()
        self.layer, self.return_sequences = layer, return_sequences

    def forward(self, x):
        output, state = self.layer(x)
        if self.return_sequences:
            return output
        h_n = state[0] if isinstance(state, tuple) else state  # an LSTM's state is (h_n, c_n)
        directions = 2 if self.layer.bidirectional else 1
        return torch.cat(list(h_n[-directions:]), dim=-1)  # the last layer's final state(s)


def keras_initializers(model: nn.Module) -> nn.Module:
    """Keras' initial weights for the layers around the recurrent ones (which take ``init="keras"``): an
    Embedding uniform in [-0.05, 0.05], a Dense layer glorot-uniform with a zero bias."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.uniform_(module.weight, -0.05, 0.05)
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
    return model


def fit(model, task, train_batches, val_batches, epochs: int) -> list[dict]:
    """Keras' ``model.fit``: ``epochs`` passes over ``train_batches(epoch)``, each followed by an evaluation
    on ``val_batches``; RMSprop with Keras' update rule and defaults (lr 1e-3, rho 0.9, eps 1e-7)."""
    runtime = Runtime(torch.device("cpu"))
    optimizer = make_optimizer("rmsprop", model.parameters(), keras_faithful=True)
    history = []
    for epoch in range(epochs):
        started = time.perf_counter()
        train = train_one_epoch(model, task, train_batches(epoch), optimizer, runtime, progress=False)
        val = evaluate(model, task, val_batches, runtime)
        record = {"epoch": epoch + 1, **train, **{f"val_{k}": v for k, v in val.items()},
                  "seconds": time.perf_counter() - started}
        print(format_epoch_line(record, epochs, task.metric_names, improved=False), flush=True)
        history.append(record)
    return history


def imdb(args: argparse.Namespace, batch_size: int = 128):
    """Listing 6.22: the 10,000 most frequent words, reviews cut (or padded) to their last 500 words, the last
    20% of the training reviews for validation (Keras' ``validation_split=0.2``). ``--small``: 100 words
    of at most 2,000 training reviews. Returns (train batches per epoch, validation batches, test set)."""
    source = args.data or (str(LOCAL_IMDB) if LOCAL_IMDB.exists() else None)
    data = load_imdb(source, num_words=10000, maxlen=100 if args.small else 500, progress=not args.small)
    train, val = data.train, data.val
    if args.small:
        train, val = Subset(train, range(min(2000, len(train)))), Subset(val, range(min(500, len(val))))
    print(f"{len(train)} train sequences, {len(val)} validation sequences, {len(data.test)} test sequences; "
          f"input_train shape: {tuple(data.train.tokens.shape)}")
    return (lambda epoch: DataLoader(train, batch_size=batch_size, shuffle=True, collate_fn=_words_and_labels),
            DataLoader(val, batch_size=batch_size, collate_fn=_words_and_labels), data.test)


def _words_and_labels(items):
    """(word ids (B, T), labels (B,)): the book's model reads the padded reviews and no lengths."""
    tokens, _lengths, labels = default_collate(items)
    return tokens, labels


def jena(args: argparse.Namespace):
    """Listings 6.28-6.34 (seqtorch.data.jena implements the book's steps, and its tests check them against
    the book's code): read the CSV, normalize by the first 200,000 rows, and the generators' batches:
    lookback 1440 rows (10 days), one row in 6 (hourly), the temperature 144 rows (24 hours) ahead.

    Without the real file a synthetic one in its format stands in (a daily and a yearly cycle plus noise,
    tests/support/jena_fixture.py), smaller, with the split in the book's proportions. ``--small``: 6,000 rows,
    windows of 240 rows (40 hours) and 24 rows (4 hours) ahead. Returns the
    :class:`~seqtorch.data.jena.JenaSplits`.
    """
    path = Path(args.data) if args.data else _real_jena() or _synthetic_jena(6_000 if args.small else 30_000)
    with warnings.catch_warnings():  # the summary below says whether the file is the published one
        warnings.simplefilter("ignore", JenaChecksumWarning)
        table = load_jena(path)
    print(table.summary.format())
    rows = len(table.values)
    spec = WindowSpec(240, 6, 24) if args.small else WindowSpec(1440, 6, 144)
    splits = Splits(200_000, 300_000) if rows >= 420_000 else Splits(rows * 200 // 420, rows * 300 // 420)
    return prepare_jena(table.values, spec, splits, batch_size=128)


def jena_fit(model, args: argparse.Namespace, prep, task, steps_per_epoch: int = 500) -> list[dict]:
    """``model.fit_generator(train_gen, steps_per_epoch=500, epochs, validation_data=val_gen,
    validation_steps=val_steps)``; ``--small`` takes 20 steps."""
    steps = 20 if args.small else steps_per_epoch
    make = prep.train_loader_factory(steps, seed=0, batch_size=prep.batch_size)
    return fit(model, task, make, DataLoader(prep.eval_dataset("val"), batch_size=prep.batch_size), args.epochs)


def jena_plot(history: list[dict], prep, path: Path) -> None:
    """Listing 6.38: the training and validation loss (the MAE), with the common-sense baseline's."""
    baseline = naive_mae(prep.data, prep.val_batches, prep.spec)
    plot_history(history, path, ["loss"], [RefLine("loss", baseline, "common-sense baseline")])
    print(f"curves: {path}; best validation MAE {min(h['val_loss'] for h in history):.4f}, the baseline's "
          f"{baseline:.4f}")


def _real_jena() -> Path | None:
    for name in (JENA_FILENAME + ".zip", JENA_FILENAME):
        if (cache_dir() / "jena" / name).is_file():
            return cache_dir() / "jena" / name
    return None


def _synthetic_jena(rows: int) -> Path:
    path = cache_dir() / "jena" / f"synthetic-{rows}.csv"
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from support.jena_fixture import write_jena_csv

        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"no {JENA_FILENAME} here: writing a synthetic file in its format, {path}", flush=True)
        partial = path.with_name(path.name + ".part")  # renamed when complete: never a cut file at path
        write_jena_csv(partial, rows, seed=0)
        partial.replace(path)
    return path
