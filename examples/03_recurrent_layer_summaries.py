"""Section 6.2.1: a recurrent layer in Keras, and the summaries the book prints, with seqtorch's layers.

    python examples/03_recurrent_layer_summaries.py

Keras' ``SimpleRNN`` returns its last output, ``(batch, units)``, or with ``return_sequences=True`` the
output of every step, ``(batch, timesteps, units)``; stacked layers need the full sequences. The
:class:`SimpleRNN` below is that layer around ``seqtorch.SimpleRNN``. With ``single_bias=True`` it trains one
bias per unit, as Keras does, so its parameter counts are Keras': each model's total is asserted to be
the book's (where Keras prints ``None`` for the batch and time sizes, the summaries show a batch of 2
reviews of 500 words).
"""

import torch
from torch import nn

import seqtorch
from seqtorch.training import count_parameters, model_summary, regression_task

max_features, embedding_dim, units = 10000, 32, 32


class SimpleRNN(nn.Module):
    """Keras' ``layers.SimpleRNN(units, return_sequences=...)`` on batch-first input."""

    def __init__(self, input_size: int, units: int, return_sequences: bool = False):
        super().__init__()
        # Keras' initializers and its one bias per unit (torch.nn's SimpleRNN has two, b_ih and b_hh)
        self.rnn = seqtorch.SimpleRNN(input_size, units, batch_first=True, init="keras", single_bias=True)
        self.return_sequences = return_sequences

    def forward(self, x):
        output, _ = self.rnn(x)  # output: (batch, timesteps, units)
        return output if self.return_sequences else output[:, -1]


def summarize(name: str, model: nn.Module, keras_total: int) -> None:
    x = torch.randint(0, max_features, (2, 500))
    print(f"{name}\n{model_summary(model, regression_task(), (x, model(x).detach()))}\n")
    total, _ = count_parameters(model)
    assert total == keras_total, (name, total, keras_total)


def main() -> None:
    # model.add(Embedding(10000, 32)); model.add(SimpleRNN(32))
    summarize("SimpleRNN returning its last output", nn.Sequential(
        nn.Embedding(max_features, embedding_dim), SimpleRNN(embedding_dim, units)), keras_total=322_080)
    # ... SimpleRNN(32, return_sequences=True)
    summarize("SimpleRNN returning the full sequence", nn.Sequential(
        nn.Embedding(max_features, embedding_dim), SimpleRNN(embedding_dim, units, return_sequences=True)),
        keras_total=322_080)
    # Stacking: every intermediate layer returns full sequences, the last one its last output.
    summarize("Four stacked SimpleRNN layers", nn.Sequential(
        nn.Embedding(max_features, embedding_dim),
        SimpleRNN(embedding_dim, units, return_sequences=True),
        SimpleRNN(units, units, return_sequences=True),
        SimpleRNN(units, units, return_sequences=True),
        SimpleRNN(units, units)), keras_total=328_320)
    print("parameter counts: Keras' (322,080; 322,080; 328,320)")


if __name__ == "__main__":
    main()
