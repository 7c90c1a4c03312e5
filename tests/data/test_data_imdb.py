"""Tests for seqtorch.data.imdb on tiny fixtures in the real formats (aclImdb tarball, imdb.npz)."""

import functools
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from support.file_faults import SyncRecorder, held_by_a_live_writer, leftover_temp
from seqtorch.data import imdb
from seqtorch.data.imdb import keras_ids, load_imdb, read_corpus
from seqtorch.training.errors import UserError

# (split, label, file name, text). Train is read neg then pos, each by numeric id (2 before 10).
REVIEWS = [
    ("train", "neg", "10_2.txt", "Boring movie"),
    ("train", "neg", "2_1.txt", "Bad bad movie.<br /><br />Awful!"),
    ("train", "pos", "0_9.txt", "Great movie, great fun."),
    ("train", "pos", "1_10.txt", "Fun fun FUN"),
    ("test", "neg", "0_3.txt", "Bad, boring; terrible."),
    ("test", "pos", "0_8.txt", "Great fun"),
]
# Training order: "bad bad movie br br awful", "boring movie", "great movie great fun", "fun fun fun".
# Counts: fun 4, movie 3, bad 2, br 2, great 2, awful 1, boring 1; ties keep first-seen order.
VOCAB = ["fun", "movie", "bad", "br", "great", "awful", "boring"]
VOCAB_NO_HTML = ["fun", "movie", "bad", "great", "awful", "boring"]
TRAIN_RANKS = [[3, 3, 2, 4, 4, 6], [7, 2], [5, 2, 5, 1], [1, 1, 1]]
TEST_RANKS = [[3, 7, 0], [5, 1]]  # "terrible" never occurs in training: rank 0 (unknown)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQTORCH_DATA", str(cache))
    return cache


def write_tree(root: Path, reviews=REVIEWS) -> Path:
    """An extracted aclImdb directory under root; returns root/aclImdb."""
    for split, label, name, text in reviews:
        path = root / "aclImdb" / split / label / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "aclImdb" / "README").write_text("fixture")
    return root / "aclImdb"


def write_tarball(path: Path, reviews=REVIEWS, extra=()) -> Path:
    """A gzipped tar in the official layout; ``extra`` = TarInfo members to append."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for split, label, name, text in reviews:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"aclImdb/{split}/{label}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def flat(seqs):
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
    return np.array([w for s in seqs for w in s], dtype=np.int64), offsets


def unflat(values, offsets):
    return [values[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def keras_order(seed, n_train, n_test):
    """The permutations keras.datasets.imdb.load_data applies: train, then test, one generator."""
    rng = np.random.RandomState(seed)
    orders = []
    for n in (n_train, n_test):
        idx = np.arange(n)
        rng.shuffle(idx)
        orders.append(idx)
    return orders


# ----------------------------------------------------------------------------------------------
# Reading and tokenizing


def test_tarball_corpus_hand_computed(tmp_path):
    corpus = read_corpus(write_tarball(tmp_path / "aclImdb_v1.tar.gz"), progress=False)
    assert corpus.vocab.words == VOCAB
    assert corpus.vocab.counts == [4, 3, 2, 2, 2, 1, 1]
    assert unflat(corpus.ranks["train"], corpus.offsets["train"]) == TRAIN_RANKS
    assert unflat(corpus.ranks["test"], corpus.offsets["test"]) == TEST_RANKS
    assert corpus.labels["train"].tolist() == [0, 0, 1, 1]
    assert corpus.labels["test"].tolist() == [0, 1]


def test_strip_html_removes_br(tmp_path):
    corpus = read_corpus(write_tarball(tmp_path / "a.tar.gz"), strip_html=True, progress=False)
    assert corpus.vocab.words == VOCAB_NO_HTML
    assert unflat(corpus.ranks["train"], corpus.offsets["train"])[0] == [3, 3, 2, 5]


@pytest.mark.parametrize("layout", ["aclImdb-dir", "parent-of-aclImdb", "dir-with-tarball"])
def test_every_local_layout_gives_the_same_corpus(tmp_path, layout):
    expected = read_corpus(write_tarball(tmp_path / "ref" / "x.tar.gz"), use_cache=False,
                           progress=False)
    if layout == "aclImdb-dir":
        source = write_tree(tmp_path / "tree")
    elif layout == "parent-of-aclImdb":
        source = write_tree(tmp_path / "tree").parent
    else:
        source = write_tarball(tmp_path / "shared" / "aclImdb_labeled.tar.gz").parent
    corpus = read_corpus(source, use_cache=False, progress=False)
    assert corpus.vocab.words == expected.vocab.words
    for s in ("train", "test"):
        np.testing.assert_array_equal(corpus.ranks[s], expected.ranks[s])
        np.testing.assert_array_equal(corpus.offsets[s], expected.offsets[s])
        np.testing.assert_array_equal(corpus.labels[s], expected.labels[s])


def test_bad_sources_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_corpus(tmp_path / "nope.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no aclImdb/ directory"):
        read_corpus(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="expected a .tar.gz"):
        read_corpus(tmp_path / "notes.txt")


# ----------------------------------------------------------------------------------------------
# Safety: refused members, damaged archives, missing splits


def _member(name, kind=tarfile.REGTYPE, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, linkname
    return info


@pytest.mark.parametrize(
    "member, reason",
    [
        (_member("aclImdb/../../evil.txt", size=3), "'..'"),
        (_member("/etc/evil.txt", size=3), "absolute path"),
        (_member("aclImdb/train/pos/5_9.txt", tarfile.SYMTYPE, linkname="/etc/passwd"), "link"),
        (_member("aclImdb/train/pos/6_9.txt", tarfile.LNKTYPE, linkname="aclImdb/README"), "link"),
        (_member("aclImdb/dev", tarfile.CHRTYPE), "device"),
        (_member("aclImdb/fifo", tarfile.FIFOTYPE), "device or special"),
    ],
    ids=["dotdot", "absolute", "symlink", "hardlink", "chardev", "fifo"],
)
def test_unsafe_members_are_refused(tmp_path, member, reason):
    archive = write_tarball(tmp_path / "evil.tar.gz", extra=[member])
    with pytest.raises(RuntimeError, match="refusing") as info:
        read_corpus(archive, progress=False)
    assert str(archive) in str(info.value) and reason in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.npz"))  # nothing cached
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_damaged_archive_raises_clear_error(tmp_path, damage):
    archive = write_tarball(tmp_path / "aclImdb_v1.tar.gz",
                            reviews=REVIEWS + [("train", "pos", f"{i}_7.txt", os.urandom(900).hex())
                                               for i in range(100, 140)])
    data = archive.read_bytes()
    archive.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x1f\x8b" + os.urandom(500),
                         "empty": b""}[damage])
    with pytest.raises(RuntimeError, match="is corrupt" if damage == "garbage" else "is truncated") as info:
        read_corpus(archive, progress=False)
    assert str(archive) in str(info.value) and "download it again" in str(info.value)
    assert isinstance(info.value, UserError)  # the scripts print it as one message
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_missing_split_names_it(tmp_path):
    archive = write_tarball(tmp_path / "a.tar.gz", [r for r in REVIEWS if r[:2] != ("test", "pos")])
    with pytest.raises(RuntimeError, match=r"aclImdb/test/pos/ \(missing split\)") as info:
        read_corpus(archive, progress=False)
    assert str(archive) in str(info.value)
    tree = write_tree(tmp_path / "t", [r for r in REVIEWS if r[0] != "train"])
    with pytest.raises(RuntimeError, match="aclImdb/train/neg/"):
        read_corpus(tree, progress=False)


# ----------------------------------------------------------------------------------------------
# Keras id conventions


def test_keras_ids_hand_computed():
    values, offsets = flat(TRAIN_RANKS)
    ids, offs = keras_ids(values, offsets, num_words=None)  # no cut: rank + 3 after a start char
    assert unflat(ids, offs) == [[1, 6, 6, 5, 7, 7, 9], [1, 10, 5], [1, 8, 5, 8, 4], [1, 4, 4, 4]]
    ids, offs = keras_ids(values, offsets, num_words=8)  # ids >= 8 -> oov 2
    assert unflat(ids, offs) == [[1, 6, 6, 5, 7, 7, 2], [1, 2, 5], [1, 2, 5, 2, 4], [1, 4, 4, 4]]
    ids, offs = keras_ids(values, offsets, num_words=8, skip_top=5)  # Keras also masks start char
    assert unflat(ids, offs) == [[2, 6, 6, 5, 7, 7, 2], [2, 2, 5], [2, 2, 5, 2, 2], [2, 2, 2, 2]]
    ids, offs = keras_ids(values, offsets, num_words=8, oov_char=None)  # drop instead
    assert unflat(ids, offs) == [[1, 6, 6, 5, 7, 7], [1, 5], [1, 5, 4], [1, 4, 4, 4]]
    ids, offs = keras_ids(values, offsets, num_words=None, start_char=None, index_from=0)
    assert unflat(ids, offs) == TRAIN_RANKS
    ids, offs = keras_ids(*flat(TEST_RANKS), num_words=None)  # unknown word -> oov
    assert unflat(ids, offs) == [[1, 6, 10, 2], [1, 8, 4]]


def _keras_load_data_reference(x, num_words, skip_top, start_char, oov_char, index_from):
    """keras.datasets.imdb.load_data's per-review steps, as plain Python lists."""
    x = [[start_char] + [w + index_from for w in s] for s in x]
    return [[w if skip_top <= w < num_words else oov_char for w in s] for s in x]


def test_keras_ids_matches_keras_loop_on_random_data():
    rng = np.random.default_rng(1)
    seqs = [rng.integers(1, 200, size=rng.integers(0, 30)).tolist() for _ in range(40)]
    ids, offs = keras_ids(*flat(seqs), num_words=50, skip_top=4, index_from=5, start_char=3,
                          oov_char=4)
    assert unflat(ids, offs) == _keras_load_data_reference(seqs, 50, 4, 3, 4, 5)


# ----------------------------------------------------------------------------------------------
# load_imdb: shuffling, validation split, padding, datasets


def test_load_imdb_shuffles_splits_and_pads_like_keras(tmp_path):
    archive = write_tarball(tmp_path / "a.tar.gz")
    data = load_imdb(archive, num_words=9, maxlen=5, seed=7, val_split=0.25, progress=False)
    ids, offs = keras_ids(*flat(TRAIN_RANKS), num_words=9)
    train_ids = unflat(ids, offs)
    test_ids = unflat(*keras_ids(*flat(TEST_RANKS), num_words=9))
    order_train, order_test = keras_order(7, 4, 2)

    def pre(s):
        s = s[-5:]
        return [0] * (5 - len(s)) + s

    rows = [pre(train_ids[i]) for i in order_train]
    assert len(data.train) == 3 and len(data.val) == 1 and len(data.test) == 2  # int(4 * 0.75)
    assert data.train.tokens.tolist() == rows[:3]
    assert data.val.tokens.tolist() == rows[3:]  # the last 25% of the shuffled training set
    assert data.test.tokens.tolist() == [pre(test_ids[i]) for i in order_test]
    assert data.train.labels.tolist() == [[0, 0, 1, 1][i] for i in order_train[:3]]
    assert data.train.lengths.tolist() == [min(len(train_ids[i]), 5) for i in order_train[:3]]

    tokens, length, label = data.train[0]
    assert tokens.dtype == torch.int64 and tokens.shape == (5,)
    assert length.dtype == torch.int64 and length.ndim == 0
    assert label.dtype == torch.float32 and label.ndim == 0


def test_load_imdb_post_padding_lengths(tmp_path):
    data = load_imdb(write_tarball(tmp_path / "a.tar.gz"), num_words=None, maxlen=4,
                     padding="post", truncating="post", val_split=0.0, seed=0, progress=False)
    assert data.val is None and len(data.train) == 4
    expected = {  # row -> length: words first, truncated at the end, lengths = kept tokens
        (1, 6, 6, 5): 4, (1, 10, 5, 0): 3, (1, 8, 5, 8): 4, (1, 4, 4, 4): 4,
    }
    got = {tuple(t.tolist()): int(n) for t, n in zip(data.train.tokens, data.train.lengths)}
    assert got == expected


def test_decode_round_trip(tmp_path):
    data = load_imdb(write_tarball(tmp_path / "a.tar.gz"), num_words=None, maxlen=8,
                     val_split=0.0, progress=False)
    texts = sorted(data.decode(t) for t in data.train.tokens)
    assert texts == sorted([
        "<START> bad bad movie br br awful", "<START> boring movie",
        "<START> great movie great fun", "<START> fun fun fun",
    ])
    test_texts = sorted(data.decode(t) for t in data.test.tokens)
    assert test_texts == ["<START> bad boring ?", "<START> great fun"]


def test_load_imdb_argument_checks(tmp_path):
    archive = write_tarball(tmp_path / "a.tar.gz")
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post'"):
        load_imdb(archive, padding="middle")
    with pytest.raises(ValueError, match="val_split"):
        load_imdb(archive, val_split=1.0)
    with pytest.raises(ValueError, match="num_words"):
        load_imdb(archive, num_words=3)
    with pytest.raises(ValueError, match="maxlen"):
        load_imdb(archive, maxlen=0)


# ----------------------------------------------------------------------------------------------
# Cache


def test_cache_hit_skips_reading_and_is_keyed(tmp_path, monkeypatch, isolated_cache):
    archive = write_tarball(tmp_path / "a.tar.gz")
    first = load_imdb(archive, maxlen=6, progress=False)
    entries = list((isolated_cache / "imdb").glob("corpus-*.npz"))
    assert len(entries) == 1
    assert not [p for p in (isolated_cache / "imdb").iterdir() if p.name.endswith(".part")]

    def no_reading(*args, **kwargs):
        raise AssertionError("the source was read again despite a cache entry")

    monkeypatch.setattr(imdb, "_iter_tar_reviews", no_reading)
    second = load_imdb(archive, maxlen=6, progress=False)  # other settings reuse the entry too
    assert torch.equal(first.train.tokens, second.train.tokens)
    assert second.vocab.words == VOCAB
    load_imdb(archive, maxlen=3, num_words=5, padding="post", progress=False)

    with pytest.raises(AssertionError, match="read again"):  # a tokenizer setting is in the key
        load_imdb(archive, strip_html=True, progress=False)
    os.utime(archive, ns=(0, 0))
    with pytest.raises(AssertionError, match="read again"):  # so is the source's identity
        load_imdb(archive, progress=False)


DAMAGE = {
    "empty": lambda data: b"",  # a crash between creating the file and writing it
    "truncated": lambda data: data[:100],
    "garbage": lambda data: bytes(range(256)) * 16,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_unreadable_cache_entry_is_reported_and_rebuilt(tmp_path, isolated_cache, damage):
    archive = write_tarball(tmp_path / "a.tar.gz")
    load_imdb(archive, progress=False)
    (entry,) = (isolated_cache / "imdb").glob("corpus-*.npz")
    entry.write_bytes(DAMAGE[damage](entry.read_bytes()))
    with pytest.warns(UserWarning, match=re.escape(str(entry))):
        data = load_imdb(archive, progress=False)
    assert data.vocab.words == VOCAB
    rebuilt = imdb.ImdbCorpus.load(entry)  # a complete entry again, read by the next load
    assert unflat(rebuilt.ranks["train"], rebuilt.offsets["train"]) == TRAIN_RANKS


def test_cache_entry_is_fsynced_before_its_rename(tmp_path, isolated_cache, monkeypatch):
    archive = write_tarball(tmp_path / "a.tar.gz")
    sync = SyncRecorder(monkeypatch)
    load_imdb(archive, progress=False)
    (entry,) = (isolated_cache / "imdb").glob("corpus-*.npz")
    assert sync.synced_before_rename(entry)


def test_stale_temp_files_in_the_cache_are_removed_live_ones_kept(tmp_path, isolated_cache):
    folder = isolated_cache / "imdb"
    killed_download = leftover_temp(folder, "aclImdb_v1.tar.gz", age_s=7200, tag="killed00",
                                    size=100_000)
    killed_write = leftover_temp(folder, "corpus-0123456789abcdef0123.npz", age_s=7200,
                                 tag="killed01")
    live = leftover_temp(folder, "aclImdb_v1.tar.gz", age_s=7200, tag="writing0")
    with held_by_a_live_writer(live):  # e.g. another process still downloading
        load_imdb(write_tarball(tmp_path / "a.tar.gz"), progress=False)  # writes a cache entry
        assert not killed_download.exists() and not killed_write.exists()
        assert live.exists()


# ----------------------------------------------------------------------------------------------
# Downloads of the canonical files (file:// URLs)


def test_download_path_verifies_and_caches(tmp_path, monkeypatch, isolated_cache):
    served = write_tarball(tmp_path / "server" / "aclImdb_v1.tar.gz")
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    monkeypatch.setattr(imdb, "fetch_aclimdb", functools.partial(
        imdb.fetch_aclimdb, url=served.as_uri(), sha256=digest, expected_size=None))
    data = load_imdb(None, maxlen=4, progress=False)
    assert data.vocab.words == VOCAB
    assert (isolated_cache / "imdb" / "aclImdb_v1.tar.gz").read_bytes() == served.read_bytes()


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, isolated_cache):
    served = write_tarball(tmp_path / "server" / "aclImdb_v1.tar.gz")
    monkeypatch.setattr(imdb, "fetch_aclimdb", functools.partial(
        imdb.fetch_aclimdb, url=served.as_uri(), expected_size=None))  # official sha256
    with pytest.raises(RuntimeError, match="sha256 mismatch") as info:
        load_imdb(None, progress=False)
    assert imdb.ACLIMDB_SHA256 in str(info.value)
    assert list((isolated_cache / "imdb").iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Keras' imdb.npz


def write_keras_npz(path: Path, x_train, y_train, x_test, y_test) -> str:
    """imdb.npz in Keras' format (object arrays of int lists); returns its sha256."""
    def objects(seqs):
        arr = np.empty(len(seqs), dtype=object)
        for i, s in enumerate(seqs):
            arr[i] = list(s)
        return arr

    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=objects(x_train), y_train=np.array(y_train, dtype=np.int64),
             x_test=objects(x_test), y_test=np.array(y_test, dtype=np.int64))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_keras_npz_matches_keras_load_data(tmp_path):
    rng = np.random.default_rng(3)
    x_train = [rng.integers(1, 40, size=rng.integers(1, 12)).tolist() for _ in range(10)]
    x_test = [rng.integers(1, 40, size=rng.integers(1, 12)).tolist() for _ in range(6)]
    y_train, y_test = rng.integers(0, 2, 10).tolist(), rng.integers(0, 2, 6).tolist()
    npz = tmp_path / "keras" / "imdb.npz"
    digest = write_keras_npz(npz, x_train, y_train, x_test, y_test)
    data = load_imdb(npz, num_words=20, maxlen=None, val_split=0.2, seed=113, npz_sha256=digest,
                     progress=False)

    # keras.datasets.imdb.load_data(num_words=20): shuffle train then test, then the id steps.
    order_train, order_test = keras_order(113, 10, 6)
    k_train = _keras_load_data_reference([x_train[i] for i in order_train], 20, 0, 1, 2, 3)
    k_test = _keras_load_data_reference([x_test[i] for i in order_test], 20, 0, 1, 2, 3)
    lengths = data.train.lengths.tolist() + data.val.lengths.tolist()
    rows = data.train.tokens.tolist() + data.val.tokens.tolist()
    assert len(data.train) == 8 and len(data.val) == 2
    assert [r[len(r) - n:] for r, n in zip(rows, lengths)] == k_train  # pre-padded
    assert [r[len(r) - n:] for r, n in zip(data.test.tokens.tolist(),
                                           data.test.lengths.tolist())] == k_test
    assert (data.train.labels.tolist() + data.val.labels.tolist()
            == [float(y_train[i]) for i in order_train])
    assert data.vocab is None  # no word index beside it


def test_keras_npz_word_index_gives_vocab(tmp_path):
    npz = tmp_path / "imdb.npz"
    digest = write_keras_npz(npz, [[1, 2]], [1], [[2, 3]], [0])
    (tmp_path / "imdb_word_index.json").write_text(json.dumps({"the": 1, "and": 2, "a": 3}))
    data = load_imdb(tmp_path, npz_sha256=digest, val_split=0.0, maxlen=4, progress=False)
    assert data.vocab.words == ["the", "and", "a"]
    assert data.decode(data.train.tokens[0]) == "<START> the and"


def test_keras_npz_checksum_is_required_before_unpickling(tmp_path, monkeypatch):
    npz = tmp_path / "imdb.npz"
    write_keras_npz(npz, [[1]], [1], [[2]], [0])

    def refuse(*args, **kwargs):
        raise AssertionError("np.load was called on an unverified file")

    monkeypatch.setattr(imdb.np, "load", refuse)
    with pytest.raises(RuntimeError, match="sha256 mismatch") as info:
        load_imdb(npz, progress=False)  # default: the official digest, which this file lacks
    assert "Refusing to unpickle" in str(info.value) and str(npz) in str(info.value)


def test_keras_npz_missing_split(tmp_path):
    npz = tmp_path / "imdb.npz"
    np.savez(npz, x_train=np.zeros(2), y_train=np.zeros(2))
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match=r"lacks \['x_test', 'y_test'\].*missing split"):
        load_imdb(npz, npz_sha256=digest, progress=False)


def _npz_with(path: Path, **arrays) -> str:
    """A non-official imdb.npz: Keras' four arrays, with some replaced; returns its sha256."""
    def objects(seqs):
        arr = np.empty(len(seqs), dtype=object)
        for i, s in enumerate(seqs):
            arr[i] = s
        return arr

    base = dict(x_train=objects([[1, 2, 3], [4, 5]]), y_train=np.array([1, 0]),
                x_test=objects([[2, 3]]), y_test=np.array([0]))
    base.update(arrays)
    np.savez(path, **base)
    return hashlib.sha256(path.read_bytes()).hexdigest()


NPZ_FAULTS = {
    "float_labels": (dict(y_train=np.array([0.9, 0.2])), r"y_train.*float64"),
    "labels_not_0_1": (dict(y_train=np.array([1, 256])), r"y_train.*256"),
    "string_labels": (dict(y_train=np.array(["pos", "neg"])), r"y_train.*<U3"),
    "float_ids": (dict(x_train=[[1.0, 2.5], [4.0]]), r"x_train.*review 0.*float"),
    "negative_ids": (dict(x_train=[[1, 2], [4, -5]]), r"x_train.*review 1.*-5"),
    "ids_above_int32": (dict(x_test=[[2, 2**31]]), r"x_test.*review 0.*2147483648"),
    "string_ids": (dict(x_train=[["the", "movie"], [4]]), r"x_train.*review 0.*str"),
    "ids_not_sequences": (dict(x_train=np.array([3, 4])), r"x_train.*review 0"),
}


@pytest.mark.parametrize("fault", sorted(NPZ_FAULTS))
def test_non_official_npz_with_bad_dtypes_or_ranges_is_refused(tmp_path, fault):
    arrays, match = NPZ_FAULTS[fault]
    for key in ("x_train", "x_test"):
        if isinstance(arrays.get(key), list):
            seqs = np.empty(len(arrays[key]), dtype=object)
            for i, seq in enumerate(arrays[key]):
                seqs[i] = seq
            arrays = {**arrays, key: seqs}
    npz = tmp_path / "imdb.npz"
    digest = _npz_with(npz, **arrays)
    with pytest.raises(RuntimeError, match=match) as info:
        load_imdb(npz, npz_sha256=digest, progress=False)
    assert str(npz) in str(info.value)


def test_tarball_with_two_aclimdb_trees_is_refused(tmp_path):
    twice = tmp_path / "twice.tar.gz"
    with tarfile.open(twice, "w:gz") as tar:
        for top in ("aclImdb", "aclImdb_copy"):
            for split, label, name, text in REVIEWS:
                data = text.encode()
                info = tarfile.TarInfo(f"{top}/{split}/{label}/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(RuntimeError, match=r"two review trees.*'aclImdb'.*'aclImdb_copy'") as info:
        read_corpus(twice, use_cache=False, progress=False)
    assert str(twice) in str(info.value)


def test_tarball_holding_a_review_twice_is_refused(tmp_path):
    """The same tree appended twice (``tar -r``): every member name occurs twice."""
    archive = write_tarball(tmp_path / "a.tar", REVIEWS + REVIEWS[:1])
    # An extracted tree can hold one id twice too, under two ratings.
    tree = write_tree(tmp_path / "tree", REVIEWS + [("train", "neg", "10_4.txt", "Again")])
    for source in (archive, tree):
        with pytest.raises(RuntimeError, match=r"train/neg/.*id 10.*twice") as info:
            read_corpus(source, use_cache=False, progress=False)
        assert str(source) in str(info.value)


def test_keras_download_path(tmp_path, monkeypatch, isolated_cache):
    server = tmp_path / "server"
    digest = write_keras_npz(server / "imdb.npz", [[1, 2], [3]], [1, 0], [[2]], [0])
    (server / "imdb_word_index.json").write_text(json.dumps({"the": 1, "and": 2, "a": 3}))
    wi_digest = hashlib.sha256((server / "imdb_word_index.json").read_bytes()).hexdigest()
    monkeypatch.setattr(imdb, "fetch_keras_imdb", functools.partial(
        imdb.fetch_keras_imdb, url=(server / "imdb.npz").as_uri(), sha256=digest,
        word_index_url=(server / "imdb_word_index.json").as_uri(), word_index_sha256=wi_digest))
    data = load_imdb("keras", npz_sha256=digest, maxlen=3, val_split=0.0, progress=False)
    assert len(data.train) == 2 and data.vocab.words == ["the", "and", "a"]
    assert (isolated_cache / "imdb" / "imdb.npz").is_file()
