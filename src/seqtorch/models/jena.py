"""The book's temperature-forecasting models (section 6.3), built from seqtorch layers.

Every model maps a batch of windows ``(B, T, F)`` (batch first, T = lookback // step) to one
prediction per window ``(B,)``. Keras' ``dropout`` is seqtorch's ``input_dropout`` and Keras'
``recurrent_dropout`` is seqtorch's ``recurrent_dropout``; ``return_sequences=True`` on all but
the last layer is how the stacked models feed one layer into the next.

``keras_faithful=True`` reproduces Keras' formulas: ``init="keras"`` recurrent layers (glorot
input kernel, orthogonal recurrent kernel, zero biases, LSTM forget bias 1, one trained bias per
gate: ``single_bias``), the Keras 2 GRU
(``reset_after=False``, candidate from ``r * h``) and glorot-uniform Dense layers with zero bias.
Otherwise torch's defaults are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from seqtorch.layers import GRU, LSTM

__all__ = ["RecurrentSpec", "RECURRENT_MODELS", "MODEL_NAMES", "DenseRegressor",
           "RecurrentRegressor", "build_jena_model"]


@dataclass(frozen=True)
class RecurrentSpec:
    """One recurrent layer as the book writes it in Keras."""

    kind: str  # "gru" | "lstm"
    units: int
    dropout: float = 0.0  # Keras' dropout = seqtorch input_dropout
    recurrent_dropout: float = 0.0
    activation: str = "tanh"
    bidirectional: bool = False


def _variants(kind: str) -> dict[str, list[RecurrentSpec]]:
    return {
        # model.add(layers.GRU(32, input_shape=(None, 14)))
        kind: [RecurrentSpec(kind, 32)],
        # layers.GRU(32, dropout=0.2, recurrent_dropout=0.2)
        f"{kind}_dropout": [RecurrentSpec(kind, 32, 0.2, 0.2)],
        # GRU(32, dropout=0.1, recurrent_dropout=0.5, return_sequences=True)
        # + GRU(64, activation='relu', dropout=0.1, recurrent_dropout=0.5)
        f"{kind}_stacked": [RecurrentSpec(kind, 32, 0.1, 0.5),
                            RecurrentSpec(kind, 64, 0.1, 0.5, activation="relu")],
        # layers.Bidirectional(layers.GRU(32))
        f"bi{kind}": [RecurrentSpec(kind, 32, bidirectional=True)],
    }


RECURRENT_MODELS: dict[str, list[RecurrentSpec]] = {**_variants("gru"), **_variants("lstm")}
MODEL_NAMES = ("dense", *RECURRENT_MODELS)


def _dense(in_features: int, out_features: int, keras_faithful: bool) -> nn.Linear:
    layer = nn.Linear(in_features, out_features)
    if keras_faithful:  # Keras Dense: glorot_uniform kernel, zeros bias
        nn.init.xavier_uniform_(layer.weight)
        nn.init.zeros_(layer.bias)
    return layer


class DenseRegressor(nn.Module):
    """The book's densely connected baseline: Flatten, Dense(hidden, relu), Dense(1).

    Input (B, T, F); output (B,).
    """

    def __init__(self, timesteps: int, n_features: int, hidden: int = 32, *,
                 keras_faithful: bool = False):
        super().__init__()
        self.timesteps, self.n_features = timesteps, n_features
        self.hidden = _dense(timesteps * n_features, hidden, keras_faithful)
        self.out = _dense(hidden, 1, keras_faithful)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or tuple(x.shape[1:]) != (self.timesteps, self.n_features):
            raise ValueError(f"expected input (B, {self.timesteps}, {self.n_features}), "
                             f"got {tuple(x.shape)}")
        return self.out(torch.relu(self.hidden(x.flatten(1)))).squeeze(-1)


class RecurrentRegressor(nn.Module):
    """Recurrent layers (each feeding its full output sequence to the next) and Dense(1).

    Input (B, T, F); output (B,) from the last layer's final state (both directions'
    final states concatenated when bidirectional, as Keras' Bidirectional does).
    """

    def __init__(self, n_features: int, specs: list[RecurrentSpec], *,
                 keras_faithful: bool = False, backend: str = "auto"):
        super().__init__()
        if not specs:
            raise ValueError("specs must name at least one recurrent layer")
        self.n_features = n_features
        layers, size = [], n_features
        for spec in specs:
            if spec.kind not in ("gru", "lstm"):
                raise ValueError(f"kind must be 'gru' or 'lstm', got {spec.kind!r}")
            kwargs = dict(batch_first=True, bidirectional=spec.bidirectional,
                          input_dropout=spec.dropout, recurrent_dropout=spec.recurrent_dropout,
                          activation=spec.activation, init="keras" if keras_faithful else "torch",
                          single_bias=keras_faithful, backend=backend)
            if spec.kind == "gru":
                layers.append(GRU(size, spec.units, reset_after=not keras_faithful, **kwargs))
            else:
                layers.append(LSTM(size, spec.units, **kwargs))
            size = spec.units * (2 if spec.bidirectional else 1)
        self.recurrent = nn.ModuleList(layers)
        self.out = _dense(size, 1, keras_faithful)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.n_features:
            raise ValueError(f"expected input (B, T, {self.n_features}), got {tuple(x.shape)}")
        for layer in self.recurrent:
            x, state = layer(x)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        last = self.recurrent[-1]
        final = torch.cat([h_n[-2], h_n[-1]], dim=-1) if last.bidirectional else h_n[-1]
        return self.out(final).squeeze(-1)


def build_jena_model(name: str, n_features: int = 14, timesteps: int = 240, *,
                     keras_faithful: bool = False, backend: str = "auto") -> nn.Module:
    """One of :data:`MODEL_NAMES`: ``dense``, ``gru``, ``gru_dropout``, ``gru_stacked``, ``bigru``
    and the same four with ``lstm``. ``timesteps`` (= lookback // step) is used by ``dense`` only.
    """
    if name == "dense":
        return DenseRegressor(timesteps, n_features, keras_faithful=keras_faithful)
    if name not in RECURRENT_MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODEL_NAMES}")
    return RecurrentRegressor(n_features, RECURRENT_MODELS[name], keras_faithful=keras_faithful,
                              backend=backend)
