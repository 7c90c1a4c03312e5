"""The book's IMDB sentiment classifiers (Deep Learning with Python, 6.1 and 6.2).

* :class:`RNNClassifier`: ``Embedding(num_words, 32) -> SimpleRNN/LSTM/GRU(32) -> Linear(1)``,
  optionally stacked and bidirectional, with seqtorch's dropout options and ``lengths``.
* :class:`DenseClassifier`: the listing 6.7 baseline, ``Embedding(num_words, 8) -> Flatten ->
  Linear(1)`` over a fixed ``maxlen``.

Both return one logit per review (use ``BCEWithLogitsLoss``; the book's sigmoid is in the loss).
``keras_faithful=True`` reproduces Keras' model, which is what makes the book's accuracy
reachable: Embedding uniform(-0.05, 0.05), recurrent layers with ``init="keras"`` (glorot-uniform
input weights, orthogonal recurrent weights, zero biases, LSTM forget bias 1) and Keras' one
trained bias per gate (``single_bias``), Linear glorot-uniform with a zero bias, and the GRU with
``reset_after=False`` as in the book's Keras 2.
With ``keras_faithful=False`` every layer keeps torch's default initialization.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import layers
from ..convert import torch_nn_class, unconvertible_options
from ..options import OPTIONS

__all__ = ["ImdbModelConfig", "RNNClassifier", "DenseClassifier", "TorchNNTwin", "build_model", "MODEL_KINDS"]

_RNN_CLASSES = {"simplernn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
MODEL_KINDS = (*_RNN_CLASSES, "dense")


@dataclass
class ImdbModelConfig:
    """Everything :func:`build_model` needs.

    Attributes:
        kind: "simplernn" | "lstm" | "gru" | "dense".
        num_words: vocabulary size (ids in [0, num_words)).
        embed_dim: embedding width; None means the book's: 32 for the RNNs, 8 for "dense".
        hidden: recurrent units per direction (RNN kinds).
        layers: stacked recurrent layers.
        bidirectional: read the review both ways and concatenate the two final states.
        dropout: between stacked layers (torch.nn's ``dropout``).
        input_dropout, recurrent_dropout, backend: seqtorch's options of the recurrent layer
            (:mod:`seqtorch.options`; Keras' ``dropout`` is ``input_dropout``).
        use_lengths: pass ``lengths`` to the recurrent layer. Only right for ``'post'``-padded
            tokens (words first): with ``'pre'`` padding the words are at the end and, as in
            Keras, the layer reads the padding, unless ``use_mask``.
        use_mask: with ``'pre'`` padding (the book's), skip the padding with a mask: each review's
            ``length`` last steps are its words (Keras' ``mask_zero``).
        maxlen: review length, needed by "dense" (its Linear sees maxlen * embed_dim features).
        keras_faithful: Keras' initializers and GRU flavour (see the module docstring).
        reset_after: GRU only; None means ``not keras_faithful``.
        torch_nn: run torch.nn's RNN/LSTM/GRU instead of seqtorch's, started from the same weights
            (for comparisons; none of seqtorch's extras, so no dropouts, lengths or reset-before GRU).
    """

    kind: str = "lstm"
    num_words: int = 10000
    embed_dim: int | None = None
    hidden: int = 32
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    use_lengths: bool = False
    use_mask: bool = False
    maxlen: int = 500
    keras_faithful: bool = False
    reset_after: bool | None = None
    backend: str = "auto"
    torch_nn: bool = False

    def layer_options(self) -> dict:
        """The fields that are seqtorch options of the recurrent layer (:data:`seqtorch.options.OPTIONS`),
        but ``reset_after``, which :class:`RNNClassifier` derives from ``keras_faithful`` when None."""
        return {name: getattr(self, name) for name in OPTIONS if hasattr(self, name) and name != "reset_after"}


def _check_tokens(tokens: Tensor) -> None:
    if tokens.ndim != 2:
        raise ValueError(f"expected tokens of shape (B, T), got {tuple(tokens.shape)}")
    if tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"expected integer token ids (int64 or int32), got {tokens.dtype}")


def _keras_embedding_(embedding: nn.Embedding) -> None:
    # Keras' Embedding default: RandomUniform(-0.05, 0.05) (torch's default is N(0, 1)).
    nn.init.uniform_(embedding.weight, -0.05, 0.05)


def _keras_linear_(linear: nn.Linear) -> None:
    # Keras' Dense default: glorot_uniform kernel, zero bias.
    nn.init.xavier_uniform_(linear.weight)
    nn.init.zeros_(linear.bias)


class TorchNNTwin(nn.Module):
    """torch.nn's RNN/LSTM/GRU holding a copy of a seqtorch layer's weights, with seqtorch's call signature.

    forward(x, lengths=None) -> what torch.nn returns. Only for layers without seqtorch's extras.
    """

    def __init__(self, layer: layers.Recurrent) -> None:
        super().__init__()
        used = unconvertible_options(layer)
        if used:
            raise ValueError(f"torch.nn has no equivalent of seqtorch's {used}; drop them to compare with torch.nn")
        options = dict(num_layers=layer.num_layers, bias=layer.bias, batch_first=layer.batch_first,
                       dropout=layer.dropout, bidirectional=layer.bidirectional)
        if "activation" in layer._torch_named:
            options["nonlinearity"] = layer.activation
        # Built on the meta device, so it draws no random numbers: the layers created after it (the
        # classifier's head) get the same initial weights as in the seqtorch model.
        self.layer = torch_nn_class(type(layer))(layer.input_size, layer.hidden_size, device="meta", **options)
        self.layer.to_empty(device=layer.weight_ih_l0.device)
        self.layer.load_state_dict(layer.state_dict(), strict=True)
        if layer.single_bias:  # the same experiment: torch.nn's bias_hh stays at zero too
            for name, p in self.layer.named_parameters():
                if name.startswith("bias_hh"):
                    p.requires_grad_(False)

    def forward(self, x: Tensor, lengths: Tensor | None = None):
        if lengths is not None:
            raise ValueError("the torch.nn layer takes no lengths= (use 'pre' padding to compare)")
        return self.layer(x)


class RNNClassifier(nn.Module):
    """Embedding -> recurrent layer(s) -> Linear(1) on the last layer's final state(s).

    forward(tokens (B, T) int, lengths (B,) int | None) -> logits (B,).
    """

    def __init__(self, kind: str = "lstm", num_words: int = 10000, embed_dim: int = 32,
                 hidden: int = 32, layers: int = 1, bidirectional: bool = False,
                 dropout: float = 0.0, use_lengths: bool = False, keras_faithful: bool = False,
                 reset_after: bool | None = None, torch_nn: bool = False, use_mask: bool = False,
                 **options) -> None:
        super().__init__()
        if kind not in _RNN_CLASSES:
            raise ValueError(f"kind must be one of {tuple(_RNN_CLASSES)}, got {kind!r}")
        self.kind = kind
        if use_lengths and use_mask:
            raise ValueError("use_lengths (post padding) and use_mask (pre padding) exclude each other")
        self.use_lengths, self.use_mask = use_lengths, use_mask
        self.embedding = nn.Embedding(num_words, embed_dim)
        # seqtorch's options of the layer (:mod:`seqtorch.options`) pass through as given
        options = dict(num_layers=layers, batch_first=True, dropout=dropout, bidirectional=bidirectional,
                       init="keras" if keras_faithful else "torch", **options)
        if kind == "gru":
            options["reset_after"] = (not keras_faithful) if reset_after is None else reset_after
        elif reset_after is not None:
            raise ValueError(f"reset_after applies to the GRU only, got it for {kind!r}")
        # Keras trains one bias per gate; only the reset-after GRU has two (in Keras too).
        options["single_bias"] = keras_faithful and not options.get("reset_after", False)
        self.rnn = _RNN_CLASSES[kind](embed_dim, hidden, **options)
        if torch_nn:
            self.rnn = TorchNNTwin(self.rnn)
        self.num_directions = 2 if bidirectional else 1
        self.head = nn.Linear(self.num_directions * hidden, 1)
        if keras_faithful:
            _keras_embedding_(self.embedding)
            _keras_linear_(self.head)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        """tokens (B, T) int ids; lengths (B,) used only if ``use_lengths`` or ``use_mask`` -> logits (B,)."""
        _check_tokens(tokens)
        x = self.embedding(tokens)  # (B, T, E)
        if self.use_mask:  # pre padding: each review's words are its last ``length`` steps
            steps = torch.arange(tokens.shape[1], device=tokens.device)
            _, state = self.rnn(x, mask=steps >= tokens.shape[1] - lengths.to(tokens.device).unsqueeze(1))
        else:
            _, state = self.rnn(x, lengths=lengths if self.use_lengths else None)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        # h_n (L*D, B, H): the last layer's D final states, concatenated per review.
        last = h_n[-self.num_directions:].transpose(0, 1).reshape(tokens.shape[0], -1)  # (B, D*H)
        return self.head(last).squeeze(-1)


class DenseClassifier(nn.Module):
    """The book's baseline (listing 6.7): Embedding -> Flatten -> Linear(1).

    forward(tokens (B, maxlen) int, lengths ignored) -> logits (B,).
    """

    def __init__(self, num_words: int = 10000, embed_dim: int = 8, maxlen: int = 500,
                 keras_faithful: bool = False) -> None:
        super().__init__()
        self.maxlen = maxlen
        self.embedding = nn.Embedding(num_words, embed_dim)
        self.head = nn.Linear(maxlen * embed_dim, 1)
        if keras_faithful:
            _keras_embedding_(self.embedding)
            _keras_linear_(self.head)

    def forward(self, tokens: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_tokens(tokens)
        if tokens.shape[1] != self.maxlen:
            raise ValueError(
                f"DenseClassifier was built for maxlen={self.maxlen}, got tokens "
                f"{tuple(tokens.shape)}"
            )
        return self.head(self.embedding(tokens).flatten(1)).squeeze(-1)  # (B, T*E) -> (B,)


def build_model(cfg: ImdbModelConfig) -> nn.Module:
    """The model described by ``cfg`` (on CPU, float32)."""
    if cfg.kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {cfg.kind!r}")
    if cfg.kind == "dense":
        return DenseClassifier(cfg.num_words, cfg.embed_dim or 8, cfg.maxlen, cfg.keras_faithful)
    return RNNClassifier(cfg.kind, cfg.num_words, cfg.embed_dim or 32, cfg.hidden, cfg.layers, cfg.bidirectional,
                         cfg.dropout, cfg.use_lengths, cfg.keras_faithful, cfg.reset_after, cfg.torch_nn,
                         cfg.use_mask, **cfg.layer_options())

