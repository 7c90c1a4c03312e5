"""Bad input is refused at the public boundary, before any work, with expected and actual values named."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import seqtorch

T, B, I, H = 5, 3, 4, 6


@pytest.fixture(params=["rnn", "lstm", "gru"])
def layer(request):
    cls = {"rnn": seqtorch.SimpleRNN, "lstm": seqtorch.LSTM, "gru": seqtorch.GRU}[request.param]
    return cls(I, H, num_layers=2)


def _hx(layer, shape, dtype=torch.float32, device="cpu"):
    h = torch.zeros(shape, dtype=dtype, device=device)
    return (h, h) if isinstance(layer, seqtorch.LSTM) else h


def test_wrong_rank(layer):
    with pytest.raises(ValueError, match=r"expected input to be 2D or 3D, got 4D .*\(1, 5, 3, 4\)"):
        layer(torch.zeros(1, T, B, I))
    with pytest.raises(ValueError, match="got 1D"):
        layer(torch.zeros(I))


def test_wrong_feature_size(layer):
    with pytest.raises(RuntimeError, match=r"Expected 4, got 7"):
        layer(torch.zeros(T, B, 7))


def test_wrong_hidden_state_shape(layer):
    with pytest.raises(RuntimeError, match=r"Expected hx(\[0\])? size \(2, 3, 6\), got \(1, 3, 6\)"):
        layer(torch.zeros(T, B, I), _hx(layer, (1, B, H)))
    with pytest.raises(RuntimeError, match=r"Expected hx(\[0\])? size \(2, 3, 6\), got \(2, 4, 6\)"):
        layer(torch.zeros(T, B, I), _hx(layer, (2, B + 1, H)))


def test_wrong_cell_state_shape():
    lstm = seqtorch.LSTM(I, H)
    with pytest.raises(RuntimeError, match=r"Expected hx\[1\] size \(1, 3, 6\), got \(1, 3, 5\)"):
        lstm(torch.zeros(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, 5)))
    with pytest.raises(RuntimeError, match=r"tuple \(h_0, c_0\) of two Tensors, got one Tensor of shape \(1, 3, 6\)"):
        lstm(torch.zeros(T, B, I), torch.zeros(1, B, H))
    with pytest.raises(seqtorch.NotATensorError, match="expected hx to be a Tensor, got tuple"):
        seqtorch.GRU(I, H)(torch.zeros(T, B, I), (torch.zeros(1, B, H), torch.zeros(1, B, H)))


def test_unbatched_input_needs_2d_hx(layer):
    with pytest.raises(RuntimeError, match="should also be 2-D but got 3-D"):
        layer(torch.zeros(T, I), _hx(layer, (2, 1, H)))
    with pytest.raises(RuntimeError, match="should also be 3-D but got 2-D"):
        layer(torch.zeros(T, B, I), _hx(layer, (2, H)))


def test_dtype_mismatch(layer):
    with pytest.raises(ValueError, match=r"input dtype \(torch.float64\) does not match .* \(torch.float32\)"):
        layer(torch.zeros(T, B, I, dtype=torch.float64))
    with pytest.raises(RuntimeError, match=r"hx(\[0\])? dtype torch.float64 does not match"):
        layer(torch.zeros(T, B, I), _hx(layer, (2, B, H), dtype=torch.float64))


def test_device_mismatch(layer):
    with pytest.raises(RuntimeError, match=r"input is on meta but the parameters are on cpu"):
        layer(torch.zeros(T, B, I, device="meta"))
    with pytest.raises(RuntimeError, match=r"hx(\[0\])? is on meta but the parameters are on cpu"):
        layer(torch.zeros(T, B, I), _hx(layer, (2, B, H), device="meta"))


@pytest.mark.parametrize("lengths,message", [
    ([5, 0, 2], r"lengths must be in \[1, 5\].*got min 0, max 5"),
    ([6, 1, 2], r"lengths must be in \[1, 5\].*got min 1, max 6"),
    ([5, 2], r"expected 3 lengths \(one per sequence\), got 2"),
    (torch.tensor([5.0, 2.0, 1.0]), "integer tensor, got dtype torch.float32"),
    (torch.tensor([[5, 2, 1]]), r"must be 1D .* got shape \(1, 3\)"),
    ([5.5, 2, 1], "must hold ints"),
])
def test_bad_lengths(layer, lengths, message):
    with pytest.raises(ValueError, match=message):
        layer(torch.zeros(T, B, I), lengths=lengths)


def test_batch_first_confusion_is_named():
    gru = seqtorch.GRU(I, H)  # batch_first=False, but the user passes (B, T, I) and B lengths
    with pytest.raises(ValueError, match=r"expected 5 lengths .* got 3; it matches the time dimension .* "
                                         r"batch_first=False"):
        gru(torch.zeros(B, T, I), lengths=[5, 4, 3])


def test_lengths_with_packed_sequence_is_refused(layer):
    packed = pack_padded_sequence(torch.zeros(T, B, I), [5, 3, 2])
    with pytest.raises(ValueError, match="cannot be combined with a PackedSequence"):
        layer(packed, lengths=[5, 3, 2])


@pytest.mark.parametrize("kwargs,message", [
    (dict(activation="gelu"), "activation must be one of"),
    (dict(recurrent_activation="softsign"), "recurrent_activation must be one of"),
    (dict(init="xavier"), "init must be one of"),
    (dict(backend="cuda"), "backend must be one of"),
    (dict(recurrent_dropout=1.0), r"recurrent_dropout must be a number in \[0, 1\)"),
    (dict(input_dropout=-0.1), r"input_dropout must be a number in \[0, 1\)"),
    (dict(dropout=1.5), r"dropout should be a number in range \[0, 1\]"),
])
def test_bad_constructor_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        seqtorch.LSTM(I, H, **kwargs)


def test_bad_sizes_and_proj_size():
    with pytest.raises(ValueError, match="hidden_size must be greater than zero, got 0"):
        seqtorch.GRU(I, 0)
    with pytest.raises(ValueError, match="num_layers must be greater than zero, got 0"):
        seqtorch.GRU(I, H, 0)
    with pytest.raises(TypeError, match=r"input_size should be of type int, got: float \(4.0\)"):
        seqtorch.GRU(4.0, H)
    assert seqtorch.LSTM(I, H, proj_size=2).weight_hr_l0.shape == (2, H)  # projections are supported
    with pytest.raises(ValueError, match="proj_size has to be smaller than hidden_size"):
        seqtorch.LSTM(I, H, proj_size=H)
    with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
        seqtorch.GRU(I, H, proj_size=0)
    with pytest.raises(ValueError, match="Unknown nonlinearity 'sigmoid'"):
        seqtorch.SimpleRNN(I, H, nonlinearity="sigmoid")


def test_unavailable_backend_is_named(monkeypatch):
    from seqtorch.ops import dispatch

    # as on an install without triton
    monkeypatch.setattr(dispatch, "IMPLEMENTATIONS", [i for i in dispatch.IMPLEMENTATIONS if i.backend != "triton"])
    gru = seqtorch.GRU(I, H, backend="triton")
    with pytest.raises(RuntimeError, match=r"backend 'triton' is not available in this install"):
        gru(torch.zeros(T, B, I))


@pytest.mark.parametrize("cls", [seqtorch.SimpleRNNCell, seqtorch.LSTMCell, seqtorch.GRUCell])
def test_cell_bad_input(cls):
    cell = cls(I, H)
    with pytest.raises(ValueError, match="expected input to be 1D or 2D, got 3D"):
        cell(torch.zeros(1, B, I))
    with pytest.raises(RuntimeError, match=r"inconsistent input_size: expected 4, got 3"):
        cell(torch.zeros(B, 3))
    h = torch.zeros(B + 1, H)
    with pytest.raises(RuntimeError, match=r"Expected hx(\[0\])? size \(3, 6\), got \(4, 6\)"):
        cell(torch.zeros(B, I), (h, h) if cls is seqtorch.LSTMCell else h)
    h1 = torch.zeros(B, H)
    with pytest.raises(RuntimeError, match=r"to be 1D like the input, got 2D"):
        cell(torch.zeros(I), (h1, h1) if cls is seqtorch.LSTMCell else h1)
    with pytest.raises(RuntimeError, match="input dtype torch.float64 does not match"):
        cell(torch.zeros(B, I, dtype=torch.float64))
