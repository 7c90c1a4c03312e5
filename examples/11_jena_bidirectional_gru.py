"""Listing 6.44: a bidirectional GRU, reading each window forward and backward.

    python examples/11_jena_bidirectional_gru.py            # 40 epochs of 500 batches, as the book
    python examples/11_jena_bidirectional_gru.py --small

``bidirectional=True`` is Keras' ``Bidirectional`` wrapper: a second GRU reads the reversed window, and the
two final outputs are concatenated (64 features for Dense). The book: about as good as the plain GRU,
since in this series the recent past says the most.
"""

from torch import nn

import book
import seqtorch
from seqtorch.data.jena import FEATURES
from seqtorch.training import regression_task


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=40, data="jena")
    prep = book.jena(args)

    # Bidirectional(GRU(32), input_shape=(None, 14)), then Dense(1)
    model = book.keras_initializers(nn.Sequential(
        book.KerasOutput(seqtorch.GRU(len(FEATURES), 32, batch_first=True, bidirectional=True, reset_after=False,
                                      init="keras", single_bias=True)),
        nn.Linear(64, 1),
    ))
    history = book.jena_fit(model, args, prep, regression_task(loss="mae"))

    book.jena_plot(history, prep, args.out / "jena_bidirectional_gru.png")
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
