"""Listing 6.27: the same IMDB model with an LSTM layer instead of the SimpleRNN.

    python examples/05_imdb_lstm.py            # the book's settings: 10 epochs, about 4 minutes
    python examples/05_imdb_lstm.py --small    # seconds (once the reviews are tokenized and cached)

The book reaches about 89% validation accuracy; scripts/train_imdb.py, the same model, 0.882 on average
over 10 seeds, as Keras does on the same data (docs/tasks.md).
"""

from torch import nn

import book
import seqtorch
from seqtorch.training import binary_classification_task, plot_history

max_features = 10000


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=10, data="imdb")
    train, val, _test = book.imdb(args)  # as in listing 6.22

    model = book.keras_initializers(nn.Sequential(
        nn.Embedding(max_features, 32),
        # Keras' LSTM(32): glorot/orthogonal initial weights, forget-gate bias 1, one bias per gate
        book.KerasOutput(seqtorch.LSTM(32, 32, batch_first=True, init="keras", single_bias=True)),
        nn.Linear(32, 1),  # Dense(1, activation="sigmoid"), the sigmoid inside the loss
    ))
    history = book.fit(model, binary_classification_task(), train, val, args.epochs)

    plot_history(history, args.out / "imdb_lstm.png", ["acc", "loss"])
    print(f"curves: {args.out / 'imdb_lstm.png'}")
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
