"""Listing 6.21: a simple RNN's forward pass in numpy, and the same weights in seqtorch.SimpleRNN.

    python examples/02_numpy_rnn.py

The book's loop over 100 timesteps of 32 features, with a state of 64. seqtorch.SimpleRNN computes the
same ``tanh(W input_t + U state_t + b)`` (its ``weight_ih_l0`` is W, ``weight_hh_l0`` is U, and its two
biases add up to b): given the numpy weights it gives the numpy outputs, to float64's last digits.
"""

import numpy as np
import torch

import seqtorch

timesteps = 100  # number of timesteps in the input sequence
input_features = 32  # dimensionality of the input feature space
output_features = 64  # dimensionality of the output feature space


def numpy_rnn(rng: np.random.Generator):
    inputs = rng.random((timesteps, input_features))  # input data: random noise for the example
    state_t = np.zeros((output_features,))  # initial state: an all-zero vector
    W = rng.random((output_features, input_features)) * 0.1  # random weight matrices (scaled down here,
    U = rng.random((output_features, output_features)) * 0.1  # so that tanh does not saturate at once)
    b = rng.random((output_features,)) * 0.1
    successive_outputs = []
    for input_t in inputs:  # input_t is a vector of shape (input_features,)
        # combines the input with the current state (the previous output) to obtain the current output
        output_t = np.tanh(np.dot(W, input_t) + np.dot(U, state_t) + b)
        successive_outputs.append(output_t)  # stores this output in a list
        state_t = output_t  # updates the state of the network for the next timestep
    # The final output: a 2D tensor of shape (timesteps, output_features). (The book writes
    # np.concatenate, which would give a flat vector; np.stack gives the shape it describes.)
    final_output_sequence = np.stack(successive_outputs, axis=0)
    return inputs, (W, U, b), final_output_sequence


def main() -> float:
    inputs, (W, U, b), expected = numpy_rnn(np.random.default_rng(0))
    rnn = seqtorch.SimpleRNN(input_features, output_features, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(W))
        rnn.weight_hh_l0.copy_(torch.from_numpy(U))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b))
        rnn.bias_hh_l0.zero_()
        output, h_n = rnn(torch.from_numpy(inputs))  # unbatched input (timesteps, input_features)
    difference = float(np.abs(output.numpy() - expected).max())
    print(f"numpy loop and seqtorch.SimpleRNN: outputs {expected.shape}, max |difference| {difference:.1e}")
    assert difference < 1e-12, difference
    assert np.array_equal(h_n[0].numpy(), output[-1].numpy())  # the final state is the last output
    return difference


if __name__ == "__main__":
    main()
