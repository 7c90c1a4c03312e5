"""Listings 6.37 and 6.38: a densely connected model on the Jena windows, and its loss curves.

    python examples/07_jena_dense.py            # 20 epochs of 500 batches, as the book
    python examples/07_jena_dense.py --small

The windows are flattened, so the order of the time steps is lost; the book's model does not beat the
common-sense baseline (validation MAE around 0.30 against 0.29).
"""

from torch import nn

import book
import seqtorch
from seqtorch.data.jena import FEATURES
from seqtorch.training import regression_task


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=20, data="jena")
    prep = book.jena(args)

    # Listing 6.37: Flatten, Dense(32, relu), Dense(1), RMSprop on the mean absolute error
    model = book.keras_initializers(nn.Sequential(
        nn.Flatten(),
        nn.Linear(prep.spec.timesteps * len(FEATURES), 32),
        nn.ReLU(),
        nn.Linear(32, 1),
    ))
    history = book.jena_fit(model, args, prep, regression_task(loss="mae"))

    book.jena_plot(history, prep, args.out / "jena_dense.png")  # listing 6.38
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
