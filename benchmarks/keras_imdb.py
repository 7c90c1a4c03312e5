"""The book's IMDB listings (6.22, 6.27) run by Keras itself, on seqtorch's exact arrays: the reference
the README's IMDB figures are compared with.

Two steps, because Keras is not a seqtorch dependency and runs in its own environment:

    # 1. with seqtorch installed: the same train/val/test arrays train_imdb.py uses
    python benchmarks/keras_imdb.py export --data ../shared/datasets/imdb --out runs/imdb_arrays.npz
    # 2. in a separate environment: python -m venv /tmp/kenv && /tmp/kenv/bin/pip install "jax[cpu]" keras
    KERAS_BACKEND=jax /tmp/kenv/bin/python benchmarks/keras_imdb.py train runs/imdb_arrays.npz \
        --model lstm --seed 0 --out runs/keras-imdb-lstm-seed0.json

    # 3. the same initial weights and batches in both, step by step (export wrote seqtorch's side)
    KERAS_BACKEND=jax /tmp/kenv/bin/python benchmarks/keras_imdb.py lockstep runs/imdb_arrays.npz

Step 2 builds ``Embedding(10000, 32) -> SimpleRNN/LSTM(32) -> Dense(1, sigmoid)`` with Keras' defaults,
compiles it with ``rmsprop`` and ``binary_crossentropy`` and fits 10 epochs of batch 128, validating
on the same 5,000 reviews seqtorch holds out (what ``validation_split=0.2`` takes). It writes the
per-epoch history, the best validation accuracy and the test accuracy of that epoch's weights.
Any Keras 3 backend works; JAX compiles the recurrent loop, so it is the fast one on CPU.

Step 3 checks that the training scripts' default recipe (the Keras one) trains as Keras does, not
just starts as it does: export also stores a seqtorch model's initial weights (seed 0) and its
losses over the first ``--steps`` training batches, in order, with Keras' RMSprop; lockstep loads
those weights into the Keras model, trains it on the same batches and prints both loss sequences and
their largest difference. Keep to the first
~70 steps of the LSTM: from about step 80 rounding differences grow chaotically (seqtorch's own
reference and fused backends, or seqtorch and torch.nn, part the same way there), so later steps
test nothing. The SimpleRNN over 500 words is chaotic from the start (its backends part at step 4),
so lockstep says little about it.
"""

from __future__ import annotations

import argparse
import json
import os
import time


BATCH = 128


def _batch(arrays, i: int):
    """Training batch ``i`` in file order: what both sides of lockstep train on."""
    sl = slice(i * BATCH, (i + 1) * BATCH)
    return arrays["x_train"][sl], arrays["y_train"][sl]


def _load(path) -> dict:
    import numpy as np

    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def export(args) -> None:
    import numpy as np

    from seqtorch.data.imdb import load_imdb

    d = load_imdb(args.data, num_words=args.num_words, maxlen=args.maxlen, progress=False)
    arrays = {}
    for split in ("train", "val", "test"):
        ds = getattr(d, split)
        arrays[f"x_{split}"] = ds.tokens.numpy()
        arrays[f"y_{split}"] = ds.labels.numpy()
    arrays.update(_seqtorch_lockstep(arrays, args.model, args.steps, args.num_words))
    tmp = args.out + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items()))


def _seqtorch_lockstep(arrays, kind: str, steps: int, num_words: int) -> dict:
    """seqtorch's model in the scripts' default (Keras) recipe, seed 0: initial weights and the first
    ``steps`` losses."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from seqtorch.models.imdb import ImdbModelConfig, build_model
    from seqtorch.training.optim import make_optimizer

    torch.manual_seed(0)
    model = build_model(ImdbModelConfig(kind=kind, num_words=num_words, keras_faithful=True))
    out = {f"init/{k}": v.numpy().copy() for k, v in model.state_dict().items()}
    opt = make_optimizer("rmsprop", model.parameters(), keras_faithful=True)
    losses = []
    for i in range(steps):
        x, y = (torch.from_numpy(v) for v in _batch(arrays, i))
        loss = F.binary_cross_entropy_with_logits(model(x.long()), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    out["lockstep_losses"] = np.array(losses)
    out["lockstep_model"] = np.array(kind)
    return out


def lockstep(args) -> None:
    import numpy as np

    a = _load(args.arrays)
    kind = str(a["lockstep_model"])
    model = _keras_model(kind, a["x_train"].shape[1], a["init/embedding.weight"].shape[0])
    w = {k[len("init/"):]: v for k, v in a.items() if k.startswith("init/")}
    # torch keeps (gates*H, I) matrices and two biases; Keras (I, gates*H) kernels and one bias. Gate
    # order is the same for the LSTM (i, f, g/c, o) and trivially for SimpleRNN.
    model.layers[0].set_weights([w["embedding.weight"]])
    model.layers[1].set_weights([w["rnn.weight_ih_l0"].T, w["rnn.weight_hh_l0"].T,
                                 w["rnn.bias_ih_l0"] + w["rnn.bias_hh_l0"]])
    model.layers[2].set_weights([w["head.weight"].T, w["head.bias"]])
    ours = a["lockstep_losses"]
    keras_losses = []
    for i in range(len(ours)):
        x, y = _batch(a, i)
        keras_losses.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))  # before the update
    keras_losses = np.array(keras_losses)
    for i in range(len(ours)):
        print(f"step {i + 1:3d}  seqtorch {ours[i]:.6f}  keras {keras_losses[i]:.6f}")
    print(f"{kind}: largest |difference| over {len(ours)} steps: {np.abs(ours - keras_losses).max():.2e}")


def _keras_model(kind: str, maxlen: int, num_words: int):
    import keras

    rnn = {"simplernn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}
    model = keras.Sequential([
        keras.Input((maxlen,), dtype="int32"),
        keras.layers.Embedding(num_words, 32),
        rnn[kind](32),
        keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"])
    return model


def train(args) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(args.seed)
    a = _load(args.arrays)
    model = _keras_model(args.model, a["x_train"].shape[1], args.num_words)

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.perf_counter() - self.t0
            # Keep each epoch's weights so the test accuracy is the best epoch's, as in train_imdb.py.
            if logs["val_acc"] > getattr(self, "best", -1.0):
                self.best, self.best_weights = logs["val_acc"], self.model.get_weights()

    timer = Timer()
    hist = model.fit(a["x_train"], a["y_train"], epochs=args.epochs, batch_size=BATCH,
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
    e.add_argument("--model", choices=("simplernn", "lstm"), default="lstm", help="for lockstep")
    e.add_argument("--steps", type=int, default=64, help="training steps recorded for lockstep")
    t = sub.add_parser("train", help="fit the book's model with Keras on the exported arrays")
    t.add_argument("arrays")
    t.add_argument("--model", choices=("simplernn", "lstm"), default="lstm")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--num-words", dest="num_words", type=int, default=10000)
    t.add_argument("--out", default=None, help="JSON with the history and the best/test figures")
    k = sub.add_parser("lockstep", help="train Keras from seqtorch's initial weights on the same batches")
    k.add_argument("arrays")
    args = parser.parse_args(argv)
    {"export": export, "train": train, "lockstep": lockstep}[args.step](args)


if __name__ == "__main__":
    main()
