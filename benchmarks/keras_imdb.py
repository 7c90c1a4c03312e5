"""The book's IMDB listings (6.22, 6.27) run by Keras itself, on seqtorch's exact arrays: the reference
the README's IMDB figures are compared with.

Two steps, because Keras is not a seqtorch dependency and runs in its own environment:

    # 1. with seqtorch installed: the same train/val/test arrays train_imdb.py uses
    python benchmarks/keras_imdb.py export --data ../shared/datasets/imdb --out runs/imdb_arrays.npz
    # 2. in a separate environment: python -m venv /tmp/kenv && /tmp/kenv/bin/pip install "jax[cpu]" keras
    KERAS_BACKEND=jax /tmp/kenv/bin/python benchmarks/keras_imdb.py train runs/imdb_arrays.npz \
        --model lstm --seed 0 --out runs/keras-imdb-lstm-seed0.json

Step 2 builds ``Embedding(10000, 32) -> SimpleRNN/LSTM(32) -> Dense(1, sigmoid)`` with Keras' defaults,
compiles it with ``rmsprop`` and ``binary_crossentropy`` and fits 10 epochs of batch 128, validating
on the same 5,000 reviews seqtorch holds out (what ``validation_split=0.2`` takes). It writes the
per-epoch history, the best validation accuracy and the test accuracy of that epoch's weights.
Any Keras 3 backend works; JAX compiles the recurrent loop, so it is the fast one on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def export(args) -> None:
    import numpy as np

    from seqtorch.data.imdb import load_imdb

    d = load_imdb(args.data, num_words=args.num_words, maxlen=args.maxlen, progress=False)
    arrays = {}
    for split in ("train", "val", "test"):
        ds = getattr(d, split)
        arrays[f"x_{split}"] = ds.tokens.numpy()
        arrays[f"y_{split}"] = ds.labels.numpy()
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def train(args) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    with np.load(args.arrays) as f:
        a = {k: f[k] for k in f.files}
    rnn = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
    model = keras.Sequential([
        keras.Input((a["x_train"].shape[1],), dtype="int32"),
        keras.layers.Embedding(args.num_words, 32),
        rnn[args.model](32),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self.t0
            # Keep each epoch's weights so the test accuracy is the best epoch's, as in train_imdb.py.
            if logs["val_acc"] > getattr(self, "best", -1.0):
                self.best, self.best_weights = logs["val_acc"], self.model.get_weights()

    timer = Timer()
    hist = model.fit(a["x_train"], a["y_train"], epochs=args.epochs, batch_size=128,
                     validation_data=(a["x_val"], a["y_val"]), callbacks=[timer], verbose=2)
    model.set_weights(timer.best_weights)
    test_loss, test_acc = model.evaluate(a["x_test"], a["y_test"], batch_size=512, verbose=0)
    val_acc = hist.history["val_acc"]
    best = int(np.argmax(val_acc))
    result = {
        "model": args.model, "seed": args.seed, "keras": keras.__version__,
        "backend": keras.backend.backend(), "history": hist.history,
        "best_epoch": best + 1, "best_val_acc": float(val_acc[best]), "test_acc": float(test_acc),
        "test_loss": float(test_loss),
        "seconds_per_epoch": float(np.mean(hist.history["seconds"])),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    if args.out:
        with open(args.out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(args.out + ".tmp", args.out)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    e = sub.add_parser("export", help="write seqtorch's IMDB arrays to an .npz (needs seqtorch)")
    e.add_argument("--data", default=None, help="as train_imdb.py's --data")
    e.add_argument("--out", required=True)
    e.add_argument("--num-words", dest="num_words", type=int, default=10000)
    e.add_argument("--maxlen", type=int, default=500)
    t = sub.add_parser("train", help="fit the book's model with Keras on the exported arrays")
    t.add_argument("arrays")
    t.add_argument("--model", choices=("simplernn", "lstm", "gru"), default="lstm")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--num-words", dest="num_words", type=int, default=10000)
    t.add_argument("--out", default=None, help="JSON with the history and the best/test figures")
    args = parser.parse_args(argv)
    export(args) if args.step == "export" else train(args)


if __name__ == "__main__":
    main()
