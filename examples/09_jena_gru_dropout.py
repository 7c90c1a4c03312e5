"""Listing 6.40: the GRU with dropout on its inputs and on its recurrent state, against overfitting.

    python examples/09_jena_gru_dropout.py            # 40 epochs of 500 batches, as the book
    python examples/09_jena_gru_dropout.py --small

Keras' ``dropout`` is seqtorch's ``input_dropout``; ``recurrent_dropout`` is the same name in both: one mask
per sequence, reused at every step (Gal and Ghahramani). The book: no more overfitting in the first 30
epochs, validation MAE 0.2619.
"""

from torch import nn

import book
import seqtorch
from seqtorch.data.jena import FEATURES
from seqtorch.training import regression_task


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=40, data="jena")
    prep = book.jena(args)

    # GRU(32, dropout=0.2, recurrent_dropout=0.2, input_shape=(None, 14)), then Dense(1)
    model = book.keras_initializers(nn.Sequential(
        book.KerasOutput(seqtorch.GRU(len(FEATURES), 32, batch_first=True, input_dropout=0.2,
                                      recurrent_dropout=0.2, reset_after=False, init="keras", single_bias=True)),
        nn.Linear(32, 1),
    ))
    history = book.jena_fit(model, args, prep, regression_task(loss="mae"))

    book.jena_plot(history, prep, args.out / "jena_gru_dropout.png")
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
