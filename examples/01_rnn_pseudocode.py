"""Listings 6.19 and 6.20: a recurrent network is a for loop that carries a state.

    python examples/01_rnn_pseudocode.py

6.19 is the book's pseudocode: each step's output is a function of the step's input and of the state,
and it becomes the state of the next step. 6.20 spells the function out: a dense transformation of both,
``tanh(W input_t + U state_t + b)``. Both run here, in PyTorch, over a random sequence.
"""

import torch

timesteps, input_features, output_features = 100, 32, 64
input_sequence = torch.randn(timesteps, input_features)


def run_rnn(f, input_sequence, state_t):
    """Listing 6.19: the loop. ``f(input_t, state_t)`` is the step; its output is the next state."""
    outputs = []
    for input_t in input_sequence:
        output_t = f(input_t, state_t)
        outputs.append(output_t)
        state_t = output_t  # the output becomes the state of the next step
    return torch.stack(outputs)  # (timesteps, output_features): one output per step


# Listing 6.20: f as a dense transformation of the input and the state (W, U and b are what it learns).
W = torch.randn(output_features, input_features) / input_features ** 0.5
U = torch.randn(output_features, output_features) / output_features ** 0.5
b = torch.zeros(output_features)


def f(input_t, state_t):
    return torch.tanh(W @ input_t + U @ state_t + b)


def main() -> torch.Tensor:
    state_t = torch.zeros(output_features)  # the initial state: all zeros
    outputs = run_rnn(f, input_sequence, state_t)
    print(f"input {tuple(input_sequence.shape)} -> outputs {tuple(outputs.shape)}; the last output, "
          f"{tuple(outputs[-1].shape)}, has seen the whole sequence")
    return outputs


if __name__ == "__main__":
    main()
