"""The torch modules an imported Keras model is made of: Keras' output conventions around seqtorch layers.

* :class:`KerasRecurrent`: a seqtorch SimpleRNN/LSTM/GRU (``batch_first``, bidirectional for Keras'
  Bidirectional) that returns what the Keras layer returns: the last output, or the sequence
  (``return_sequences``), the two directions merged as ``merge_mode`` says; ``go_backwards`` reads the
  sequence from its end and, as in Keras, returns the outputs in that reversed order.
* :class:`Dense`: ``nn.Linear`` followed by the Keras activation.
* :class:`KerasSequential`: the layers in order, with Keras' input checked at the boundary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..layers import Recurrent

_DENSE_ACTIVATIONS = {"linear": lambda x: x, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu,
                      "softmax": lambda x: torch.softmax(x, dim=-1)}


class KerasRecurrent(nn.Module):
    """A Keras recurrent layer. forward(x (B, T, F), mask (B, T) bool or None) ->

    * ``return_sequences=False``: (B, H), or (B, 2H) for a Bidirectional with ``merge_mode="concat"``;
    * ``return_sequences=True``: (B, T, H) / (B, T, 2H), the backward direction aligned with the input's
      time steps (Keras flips it back, and so does torch's reverse direction);
    * ``merge_mode=None``: the tuple (forward, backward) of the two directions' outputs.

    A ``mask`` (an Embedding's ``mask_zero``) skips the steps where it is False, as Keras does: the state
    carries over them; a lone layer's output there repeats its last output (Keras' ``zero_output_for_mask``
    is off), a Bidirectional's is zero. ``stateful=True``: each call starts from the state the last one
    ended in (Keras' ``stateful``; no gradient flows across calls); :meth:`reset_states` starts over.

    ``rnn`` is the seqtorch layer (``batch_first=True``; ``bidirectional=True`` for a Bidirectional).
    """

    def __init__(self, rnn: Recurrent, *, return_sequences: bool = False, go_backwards: bool = False,
                 merge_mode: str | None = "concat", stateful: bool = False) -> None:
        super().__init__()
        if not rnn.batch_first or rnn.num_layers != 1:
            raise ValueError(f"KerasRecurrent wraps one batch_first layer, got num_layers={rnn.num_layers}, "
                             f"batch_first={rnn.batch_first}")
        if rnn.bidirectional and go_backwards:
            raise ValueError("go_backwards applies to a one-direction layer (a Bidirectional has both)")
        if stateful and rnn.bidirectional:
            raise ValueError("a stateful layer runs one direction (a Bidirectional cannot carry its state)")
        self.rnn = rnn
        self.return_sequences = return_sequences
        self.go_backwards = go_backwards
        self.merge_mode = merge_mode
        self.stateful = stateful
        self.state = None  # the state a stateful layer carries to the next call

    def reset_states(self) -> None:
        """A stateful layer's next call starts from zeros again (Keras' ``reset_states``)."""
        self.state = None

    def forward(self, x: Tensor, mask: Tensor | None = None):
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        output, state = self.rnn(x, self.state if self.stateful else None, mask=mask)  # (B, T, D*H); h_n (D, B, H)
        if self.stateful:
            self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        h_n = state[0] if isinstance(state, tuple) else state
        if not self.rnn.bidirectional:
            if self.return_sequences and mask is not None:
                output = _repeat_last_output(output, mask)
            return output if self.return_sequences else h_n[-1]
        hidden = self.rnn.hidden_size
        if self.return_sequences:
            forward, backward = output[..., :hidden], output[..., hidden:]
        else:  # each direction's last step: the forward one at T-1, the backward one at 0
            forward, backward = h_n[-2], h_n[-1]
        if self.merge_mode == "concat":
            return torch.cat([forward, backward], dim=-1)
        if self.merge_mode == "sum":
            return forward + backward
        if self.merge_mode == "mul":
            return forward * backward
        if self.merge_mode == "ave":
            return (forward + backward) / 2
        return forward, backward

    def extra_repr(self) -> str:
        s = f"return_sequences={self.return_sequences}"
        if self.go_backwards:
            s += ", go_backwards=True"
        if self.rnn.bidirectional:
            s += f", merge_mode={self.merge_mode!r}"
        return s


def _repeat_last_output(output: Tensor, mask: Tensor) -> Tensor:
    """(B, T, H) outputs with each masked step's replaced by the last unmasked step's before it (zeros, the
    initial state's output, where there is none), as Keras' recurrent layers give them."""
    steps = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask, steps, -1).cummax(dim=1).values  # (B, T): the step each output comes from
    taken = output.gather(1, last.clamp(min=0).unsqueeze(-1).expand_as(output))
    return torch.where((last >= 0).unsqueeze(-1), taken, 0.0)


class Dense(nn.Linear):
    """Keras' Dense: ``activation(x @ W^T + b)`` over the last dimension. Parameters as nn.Linear's."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, activation: str = "linear",
                 device=None, dtype=None) -> None:
        if activation not in _DENSE_ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(_DENSE_ACTIVATIONS)}, got {activation!r}")
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return _DENSE_ACTIVATIONS[self.activation](super().forward(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class KerasSequential(nn.Module):
    """A Keras Sequential model's layers, run in order.

    forward(x) -> the Keras model's output. ``x``: int word ids (B, T) when the model starts with an
    Embedding, else float features (B, T, F) (or (B, F) for a model that starts with a Dense).

    Attributes:
        layers: the modules, one per Keras layer (InputLayer excepted), in the model's order.
        names: the Keras layer names, same order.
        input_features: F, the feature size the model reads (None for word ids).
    """

    def __init__(self, layers: list[nn.Module], names: list[str], *, input_features: int | None,
                 name: str = "sequential", mask_zero: bool = False) -> None:
        super().__init__()
        if len(layers) != len(names):
            raise ValueError(f"{len(layers)} layers but {len(names)} names")
        self.layers = nn.ModuleList(layers)
        self.names = list(names)
        self.input_features = input_features
        self.name = name
        self.mask_zero = mask_zero

    def forward(self, x: Tensor):
        self._check_input(x)
        # Keras' mask_zero: the Embedding's ids 0 are padding, skipped by the recurrent layers after it, until
        # one returns a single step (Dense and Dropout pass the mask on, as in Keras)
        mask = (x != 0) if self.mask_zero else None
        for layer in self.layers:
            if isinstance(layer, KerasRecurrent):
                x = layer(x, mask)
                mask = mask if layer.return_sequences else None
            else:
                x = layer(x)
        return x

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{self.name}: expected a Tensor, got {type(x).__name__}")
        if self.input_features is None:
            if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
                raise ValueError(f"{self.name}: the model starts with an Embedding and reads integer word ids "
                                 f"(B, T); got dtype {x.dtype}")
            if x.dim() != 2:
                raise ValueError(f"{self.name}: expected word ids of shape (B, T), got {tuple(x.shape)}")
            return
        first = self.layers[0]
        rank = 3 if isinstance(first, KerasRecurrent) else None
        if (rank is not None and x.dim() != rank) or x.dim() < 2 or x.shape[-1] != self.input_features:
            expected = f"(B, T, {self.input_features})" if rank == 3 else f"(..., {self.input_features})"
            raise ValueError(f"{self.name}: expected input of shape {expected}, got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{self.name}: expected floating-point features, got dtype {x.dtype}")
