"""Listings 6.22 to 6.24: the IMDB reviews, an Embedding and a SimpleRNN, and the training curves.

    python examples/04_imdb_simplernn.py            # the book's settings: 10 epochs, about 2 minutes
    python examples/04_imdb_simplernn.py --small    # seconds (once the reviews are tokenized and cached)

The book reaches about 85% validation accuracy with this model; scripts/train_imdb.py, which trains the
same model, reaches 0.865 on average (docs/tasks.md).
"""

from torch import nn

import book
import seqtorch
from seqtorch.training import binary_classification_task, plot_history

max_features = 10000  # number of words to consider as features


def main(argv=None) -> list[dict]:
    args = book.arguments(__doc__, argv, epochs=10, data="imdb")

    # Listing 6.22: preparing the IMDB data (the 10,000 most frequent words, reviews cut to 500 words)
    train, val, _test = book.imdb(args)

    # Listing 6.23: training the model with Embedding and SimpleRNN layers
    model = book.keras_initializers(nn.Sequential(
        nn.Embedding(max_features, 32),
        # Keras' SimpleRNN(32): Keras' initializers, one bias per unit, the last output
        book.KerasOutput(seqtorch.SimpleRNN(32, 32, batch_first=True, init="keras", single_bias=True)),
        # Dense(1, activation="sigmoid"): the sigmoid is inside the loss, binary cross-entropy on logits
        nn.Linear(32, 1),
    ))
    # optimizer="rmsprop", loss="binary_crossentropy", metrics=["acc"], validation_split=0.2
    history = book.fit(model, binary_classification_task(), train, val, args.epochs)

    # Listing 6.24: plotting results (training as dots, validation as a line)
    plot_history(history, args.out / "imdb_simplernn.png", ["acc", "loss"])
    print(f"curves: {args.out / 'imdb_simplernn.png'}")
    return history


if __name__ == "__main__":
    seqtorch.training.cli.run(main)
