"""Listing 6.41: two stacked GRU layers, both with dropout; the second one relu.

    python examples/10_jena_stacked_gru.py            # 40 epochs of 500 batches, as the book
    python examples/10_jena_stacked_gru.py --small

The first layer returns its full output sequence (``return_sequences=True``) for the second to read. The
book: a small gain over the single layer, validation MAE about 0.2589.
"""

from torch import nn

import book
import seqtorch
from seqtorch.data.jena import FEATURES
from seqtorch.training import regression_task


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=40, data="jena")
    prep = book.jena(args)

    keras_gru = dict(batch_first=True, input_dropout=0.1, recurrent_dropout=0.5, reset_after=False,
                     init="keras", single_bias=True)
    model = book.keras_initializers(nn.Sequential(
        # GRU(32, dropout=0.1, recurrent_dropout=0.5, return_sequences=True, input_shape=(None, 14))
        book.KerasOutput(seqtorch.GRU(len(FEATURES), 32, **keras_gru), return_sequences=True),
        # GRU(64, activation="relu", dropout=0.1, recurrent_dropout=0.5)
        book.KerasOutput(seqtorch.GRU(32, 64, activation="relu", **keras_gru)),
        nn.Linear(64, 1),
    ))
    history = book.jena_fit(model, args, prep, regression_task(loss="mae"))

    book.jena_plot(history, prep, args.out / "jena_stacked_gru.png")
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
