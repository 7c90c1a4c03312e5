"""Keras' layers written out in numpy, in Keras' own conventions: the independent side of the import tests.

Arrays are Keras' (kernel (I, G*H), recurrent kernel (H, G*H), gate blocks LSTM i, f, c, o and GRU
z, r, h, row vectors times kernels), inputs (B, T, F) batch first, as Keras documents its layers.
Nothing here uses torch or seqtorch, so a mapping error cannot cancel out.
"""

from __future__ import annotations

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": sigmoid,
    "linear": lambda x: x,
    "softmax": lambda x: np.exp(x - x.max(-1, keepdims=True)) / np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True),
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),  # Keras 2: 0.2 x + 0.5
    "hard_sigmoid_keras3": lambda x: np.clip(x / 6.0 + 0.5, 0.0, 1.0),  # Keras 3: relu6(x + 3) / 6
}


def _scan(step, x, state, go_backwards: bool, return_sequences: bool, mask=None, zero_output_for_mask=False):
    """Keras' RNN loop: steps in reading order; with go_backwards the outputs stay in that (reversed) order.

    ``mask`` (B, T) bool (an Embedding's mask_zero): a masked step keeps the state, and its output is the
    last output before it (zeros first), or zeros with ``zero_output_for_mask`` (a Bidirectional's layers
    that return sequences), as keras.src.backend's rnn does."""
    order = range(x.shape[1] - 1, -1, -1) if go_backwards else range(x.shape[1])
    outputs, last = [], np.zeros_like(state[0])
    for t in order:
        new = step(x[:, t], state)
        if mask is None:
            state, last = new, new[0]
        else:
            keep = mask[:, t][:, None]
            state = tuple(np.where(keep, n, s) for n, s in zip(new, state))
            last = np.where(keep, new[0], np.zeros_like(last) if zero_output_for_mask else last)
        outputs.append(last)
    return np.stack(outputs, axis=1) if return_sequences else outputs[-1]


def simple_rnn(x, kernel, recurrent, bias=None, *, activation="tanh", return_sequences=False, go_backwards=False,
               **masking):
    units = recurrent.shape[0]
    act = ACTIVATIONS[activation]
    b = np.zeros(units) if bias is None else bias

    def step(x_t, state):
        return (act(x_t @ kernel + b + state[0] @ recurrent),)

    return _scan(step, x, (np.zeros((x.shape[0], units)),), go_backwards, return_sequences, **masking)


def lstm(x, kernel, recurrent, bias=None, *, activation="tanh", recurrent_activation="sigmoid",
         return_sequences=False, go_backwards=False, **masking):
    units = recurrent.shape[0]
    act, rec = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    b = np.zeros(4 * units) if bias is None else bias

    def step(x_t, state):
        h, c = state
        z = x_t @ kernel + h @ recurrent + b
        i, f, cc, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = rec(f) * c + rec(i) * act(cc)
        return rec(o) * act(c), c

    zeros = np.zeros((x.shape[0], units))
    return _scan(step, x, (zeros, zeros), go_backwards, return_sequences, **masking)


def gru(x, kernel, recurrent, bias=None, *, reset_after=True, activation="tanh", recurrent_activation="sigmoid",
        return_sequences=False, go_backwards=False, **masking):
    units = recurrent.shape[0]
    act, rec = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    if bias is None:
        input_bias, recurrent_bias = np.zeros(3 * units), np.zeros(3 * units)
    elif reset_after:
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        input_bias, recurrent_bias = bias, None

    def block(a, k):
        return a[..., k * units:(k + 1) * units]

    def step(x_t, state):
        h = state[0]
        xz, xr, xh = (block(x_t @ kernel + input_bias, k) for k in range(3))
        if reset_after:
            rz, rr, rh = (block(h @ recurrent + recurrent_bias, k) for k in range(3))
            z, r = rec(xz + rz), rec(xr + rr)
            hh = act(xh + r * rh)
        else:
            z = rec(xz + h @ block(recurrent, 0))
            r = rec(xr + h @ block(recurrent, 1))
            hh = act(xh + (r * h) @ block(recurrent, 2))
        return (z * h + (1 - z) * hh,)

    return _scan(step, x, (np.zeros((x.shape[0], units)),), go_backwards, return_sequences, **masking)


def bidirectional(layer, x, forward_arrays, backward_arrays, *, merge_mode="concat", return_sequences=False,
                  mask=None, **options):
    """Keras' Bidirectional: the backward copy reads with go_backwards; its sequence is flipped back. With a
    mask, the layers' masked outputs are zeros when they return sequences (Keras sets zero_output_for_mask)."""
    masking = dict(mask=mask, zero_output_for_mask=return_sequences) if mask is not None else {}
    y = layer(x, *forward_arrays, return_sequences=return_sequences, **masking, **options)
    y_rev = layer(x, *backward_arrays, return_sequences=return_sequences, go_backwards=True, **masking, **options)
    if return_sequences:
        y_rev = y_rev[:, ::-1]
    if merge_mode == "concat":
        return np.concatenate([y, y_rev], axis=-1)
    if merge_mode == "sum":
        return y + y_rev
    if merge_mode == "mul":
        return y * y_rev
    if merge_mode == "ave":
        return (y + y_rev) / 2
    return y, y_rev


def dense(x, kernel, bias=None, *, activation="linear"):
    y = x @ kernel
    return ACTIVATIONS[activation](y if bias is None else y + bias)


def embedding(ids, table):
    return table[ids].astype(np.float64)  # the tests compute in float64 from the float32 weights


def flatten(x):
    return x.reshape(x.shape[0], -1)
