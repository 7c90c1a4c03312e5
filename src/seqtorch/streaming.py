"""Streaming: a layer's state carried from one call to the next, for truncated BPTT and online inference.

A :class:`Stream` (``layer.stream()``) holds the state a layer ended in and starts the next call from it,
so that feeding a sequence chunk by chunk gives the outputs and final state of one call over the whole
sequence (Keras' ``stateful=True``)::

    stream = lstm.stream()                 # from the layer's initial state
    for chunk in chunks:                   # (T_i, B, I) each, or (B, T_i, I) with batch_first
        output = stream(chunk)             # the same numbers as that slice of lstm(torch.cat(chunks))
        loss = ...; loss.backward()
        stream.detach_()                   # truncated BPTT: the next chunk's graph starts here

Masks, resets and lengths apply per chunk (a sequence whose chunk is masked throughout keeps its state). A
bidirectional layer cannot stream: its reverse direction reads the sequence's end first.
"""

from __future__ import annotations

from torch import Tensor, nn


class Stream:
    """A layer and the state it carries across calls (``state``: None before the first call, else the last
    call's final state, as the layer returns it: ``h_n``, or ``(h_n, c_n)`` for an LSTM)."""

    def __init__(self, layer: nn.Module, hx=None) -> None:
        if getattr(layer, "bidirectional", False):
            raise ValueError(f"{type(layer).__name__}: a bidirectional layer cannot stream (its reverse direction "
                             f"reads each sequence from its end); run it on whole sequences")
        self.layer = layer
        self.state = hx

    def __call__(self, input: Tensor, *, lengths=None, mask: Tensor | None = None,
                 resets: Tensor | None = None) -> Tensor:
        """The layer's output for this chunk, started from the carried state; the state moves on."""
        output, self.state = self.layer(input, self.state, lengths, mask=mask, resets=resets)
        return output

    def detach_(self) -> "Stream":
        """Cut the state from the graph of the calls before (truncated backpropagation through time)."""
        if self.state is not None:
            self.state = tuple(s.detach() for s in self.state) if isinstance(self.state, tuple) else \
                self.state.detach()
        return self

    def reset(self, hx=None) -> "Stream":
        """Start over: the next call starts from ``hx`` (None: the layer's initial state)."""
        self.state = hx
        return self
