"""Tests for seqtorch.data.text: Keras' word splitting, frequency ranking and pad_sequences."""

import numpy as np
import pytest

from seqtorch.data.text import (
    KERAS_FILTERS,
    Vocabulary,
    pad_sequences,
    strip_html_breaks,
    text_to_word_sequence,
)


def test_keras_filters_are_keras_defaults():
    assert KERAS_FILTERS == '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'
    assert "'" not in KERAS_FILTERS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", ["hello", "world"]),
        ("It's <br />GREAT\tfilm.\n", ["it's", "br", "great", "film"]),  # keeps "br" like Keras
        ("a  --  b", ["a", "b"]),  # runs of separators give no empty words
        ("a\rb\xa0c", ["a\rb\xa0c"]),  # Keras splits on " " only, not on other whitespace
        ("", []),
        ("ÉCOLE", ["école"]),
    ],
    ids=["punct", "br-tab-newline", "runs", "other-whitespace", "empty", "unicode-lower"],
)
def test_text_to_word_sequence(text, expected):
    assert text_to_word_sequence(text) == expected


def test_text_to_word_sequence_options():
    assert text_to_word_sequence("A,B c", filters="", lower=False) == ["A,B", "c"]
    assert text_to_word_sequence("a,b", split=",", filters="") == ["a", "b"]


def test_strip_html_breaks():
    assert strip_html_breaks("a<br />b<BR/>c<br>d< br/>e") == "a b c d< br/>e"
    assert text_to_word_sequence(strip_html_breaks("Good.<br /><br />Bad")) == ["good", "bad"]


def test_vocabulary_ranks_like_keras_tokenizer():
    # counts: b 1, a 2, c 2, d 2. Keras sorts by count with a stable sort over first-seen order,
    # so the ties a, c, d keep the order they were first seen in, and b (count 1) comes last.
    vocab = Vocabulary.from_token_lists([["b", "a", "c"], ["a", "c", "d"], ["d"]])
    assert vocab.words == ["a", "c", "d", "b"]
    assert vocab.counts == [2, 2, 2, 1]
    assert [vocab.rank(w) for w in "abcd"] == [1, 4, 2, 3]
    assert vocab.rank("zzz") == 0
    assert vocab.encode(["d", "zzz", "a"]) == [3, 0, 1]
    assert vocab.decode([3, 0, 1, 99]) == ["d", "?", "a", "?"]
    assert len(vocab) == 4


def test_vocabulary_serialisation_round_trip():
    vocab = Vocabulary.from_token_lists([["x", "ÿ", "x"], ["don't"]])
    back = Vocabulary.from_bytes(vocab.to_bytes(), vocab.counts)
    assert back.words == vocab.words == ["x", "ÿ", "don't"]
    assert back.counts == [2, 1, 1]
    assert Vocabulary.from_bytes(b"").words == []


def test_vocabulary_rejects_bad_input():
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(["a", "a"])
    with pytest.raises(ValueError, match="one per word"):
        Vocabulary(["a", "b"], [1])


# Sequences [1 2 3], [4 5], [6 7 8 9 10], [] stored flat.
VALUES = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
OFFSETS = np.array([0, 3, 5, 10, 10])


@pytest.mark.parametrize(
    "padding, truncating, expected",
    [
        ("pre", "pre", [[0, 1, 2, 3], [0, 0, 4, 5], [7, 8, 9, 10], [0, 0, 0, 0]]),
        ("post", "pre", [[1, 2, 3, 0], [4, 5, 0, 0], [7, 8, 9, 10], [0, 0, 0, 0]]),
        ("pre", "post", [[0, 1, 2, 3], [0, 0, 4, 5], [6, 7, 8, 9], [0, 0, 0, 0]]),
        ("post", "post", [[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9], [0, 0, 0, 0]]),
    ],
    ids=["pre-pre", "post-pre", "pre-post", "post-post"],
)
def test_pad_sequences_hand_computed(padding, truncating, expected):
    out, lengths = pad_sequences(VALUES, OFFSETS, maxlen=4, padding=padding, truncating=truncating)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(lengths, [3, 2, 4, 0])
    assert out.dtype == np.int32 and lengths.dtype == np.int64


def test_pad_sequences_maxlen_none_and_value():
    out, lengths = pad_sequences(VALUES, OFFSETS, maxlen=None, value=-1)
    assert out.shape == (4, 5)
    np.testing.assert_array_equal(out[1], [-1, -1, -1, 4, 5])
    np.testing.assert_array_equal(lengths, [3, 2, 5, 0])


def _naive_pad(seqs, maxlen, padding, truncating):
    """A plain loop written from Keras' pad_sequences documentation."""
    out = np.zeros((len(seqs), maxlen), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = s[-maxlen:] if truncating == "pre" else s[:maxlen]
        if len(s):
            if padding == "pre":
                out[i, maxlen - len(s):] = s
            else:
                out[i, : len(s)] = s
    return out


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [1, 7, 40])
def test_pad_sequences_matches_naive_loop(padding, truncating, maxlen):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 100, size=rng.integers(0, 20)) for _ in range(50)]
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    values = np.concatenate(seqs)
    out, lengths = pad_sequences(values, offsets, maxlen, padding, truncating)
    np.testing.assert_array_equal(out, _naive_pad(seqs, maxlen, padding, truncating))
    np.testing.assert_array_equal(lengths, [min(len(s), maxlen) for s in seqs])


def test_pad_sequences_bad_arguments():
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post', got 'mid'"):
        pad_sequences(VALUES, OFFSETS, 4, padding="mid")
    with pytest.raises(ValueError, match="truncating"):
        pad_sequences(VALUES, OFFSETS, 4, truncating="x")
    with pytest.raises(ValueError, match="offsets"):
        pad_sequences(VALUES, np.array([0, 3, 11]), 4)
    with pytest.raises(ValueError, match="maxlen"):
        pad_sequences(VALUES, OFFSETS, -1)
