"""1,000 mutated imdb.npz files and 1,000 mutated Jena CSV files (a fast subset unmarked): each loads or
raises the reader's own error (ImdbFileError, JenaFileError) naming the file.

Mutations of small files in the real formats (``tests/support/fuzzing.py``): flipped bytes, truncations, members
reordered or missing, values of the wrong type, lengths that disagree, headers declaring huge shapes,
damaged pickles (imdb.npz); lines swapped, dropped or repeated, cells that are not finite numbers, fields
added or removed, impossible timestamps (CSV). Each file is read in a worker process under a memory and a
time limit: no crash, no hang, no other exception type, no cache entry written for a file that failed.
The imdb.npz is read as a user's own copy, with its own sha256 passed, so that the damage reaches the
reader past the checksum. Then the findings of the fuzzer, each as a test of its own.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from support.fuzzing import fuzz, summary
from support.jena_fixture import write_jena_csv
from seqtorch.data.imdb import ImdbFileError, read_corpus
from seqtorch.data.jena import JenaFileError, load_jena


def _check(outcomes, count):
    bad = [o for o in outcomes if o.result not in ("loaded", "refused")]
    report = "\n".join(f"case {o.case.index} ({o.case.mutation}): {o.result}: {o.detail}" for o in bad[:10])
    assert not bad, f"{summary(outcomes)}\n{report}"
    assert len(outcomes) == count and {o.result for o in outcomes} == {"loaded", "refused"}, summary(outcomes)


@pytest.mark.parametrize("target", ["imdb", "jena"])
def test_data_files_fuzz_fast(tmp_path, target):
    _check(fuzz(target, 100, seed=0, work=tmp_path), 100)


# Slow: the full count, 1,000 files of each format; by default test_data_files_fuzz_fast reads 100 of each,
# with the same checks.
@pytest.mark.slow
@pytest.mark.parametrize("target", ["imdb", "jena"])
def test_data_files_fuzz_1000(tmp_path, target):
    outcomes = fuzz(target, 1000, seed=2026, work=tmp_path)
    print(target, summary(outcomes))
    _check(outcomes, 1000)


# --- imdb.npz: the findings -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _objects(items):
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npz(path, **members: bytes):
    """An imdb.npz whose members are the given .npy bytes (Keras' four arrays unless replaced)."""
    base = {"x_train": _npy(_objects([[1, 2, 3], [4, 5]])), "y_train": _npy(np.array([1, 0])),
            "x_test": _npy(_objects([[2, 3]])), "y_test": _npy(np.array([0]))}
    base.update(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in base.items():
            archive.writestr(f"{name}.npy", data)
    return path


def _read(path):
    return read_corpus(path, npz_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), progress=False)


def _header(descr: str, shape: tuple, body: bytes) -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body


@pytest.mark.parametrize("members, reason", [
    ({"y_train": _header("<i8", (10 ** 12,), b"\0" * 16)}, r"y_train.npy declares \(1000000000000,\) values of int64"),
    ({"x_test": _header("|O", (2 ** 62,), pickle.dumps([1]))}, r"x_test.npy declares \(4611686018427387904,\)"),
    ({"x_train": _npy(_objects([[1, 2, 3], [4, 5]]))[:-9]}, r"is corrupt \(UnpicklingError"),
    ({"x_train": _npy(_objects([[1, 2, 3], [4, 5]])).replace(b"descr", b"d\x89scr")}, r"is corrupt \("),
    ({"x_train": _npy(np.array(3))}, r"x_train has shape \(\); Keras' imdb.npz holds one entry per review"),
    ({"x_train": _npy(_objects([[[1, 2], [3]], [4]]))}, r"x_train, review 0: word ids must be integers"),
], ids=["huge-plain", "huge-objects", "cut-pickle", "garbled-header", "scalar", "ragged"])
def test_damaged_imdb_npz_is_an_imdb_file_error(tmp_path, isolated_cache, members, reason):
    path = _npz(tmp_path / "imdb.npz", **members)
    with pytest.raises(ImdbFileError, match=reason) as info:
        _read(path)
    assert str(path) in str(info.value)
    assert not list(isolated_cache.rglob("*.npz"))  # nothing cached for a file that failed


def _flip_compression_method(path, member: str):
    """Set ``member``'s compression method, in its local header and its directory entry, to one zip lacks."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
        at = archive.start_dir
    struct.pack_into("<H", data, info.header_offset + 8, 99)
    while data[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46:at + 46 + name_len].decode() == member:
            struct.pack_into("<H", data, at + 10, 99)
        at += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))
    return path


def test_an_npz_member_with_an_unknown_compression_method(tmp_path):
    path = _flip_compression_method(_npz(tmp_path / "imdb.npz"), "y_test.npy")
    with pytest.raises(ImdbFileError, match=r"imdb.npz is corrupt \(NotImplementedError"):
        _read(path)


def test_a_jena_zip_member_with_an_unknown_compression_method(tmp_path):
    from support.jena_fixture import zip_csv

    csv = write_jena_csv(tmp_path / "jena_climate_2009_2016.csv", n_rows=50).path
    path = _flip_compression_method(zip_csv(csv, tmp_path / "jena.zip"), "jena_climate_2009_2016.csv")
    with pytest.raises(JenaFileError, match=r"jena.zip: the zip archive could not be read \(NotImplementedError"):
        load_jena(path, cache=False)


def test_a_damaged_word_index_beside_the_npz(tmp_path):
    path = _npz(tmp_path / "imdb.npz")
    (tmp_path / "imdb_word_index.json").write_text('{"the": "1"}')
    with pytest.raises(ImdbFileError, match=r"imdb_word_index.json: not Keras' imdb_word_index.json"):
        _read(path)
    (tmp_path / "imdb_word_index.json").write_bytes(b"\xff{")
    with pytest.raises(ImdbFileError, match=r"imdb_word_index.json: not Keras' imdb_word_index.json"):
        _read(path)


# --- Jena CSV: the findings -------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["1_000", "1" * 5000], ids=["digit-separator", "5000-digits"])
def test_a_cell_numpy_refuses_is_named_by_line_and_column(tmp_path, cell):
    path = write_jena_csv(tmp_path / "jena.csv", n_rows=50).path
    lines = path.read_bytes().split(b"\n")
    cells = lines[7].split(b",")
    cells[3] = cell.encode()
    lines[7] = b",".join(cells)
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(JenaFileError) as info:
        load_jena(path, cache=False)
    message = str(info.value)
    assert message.startswith(f"{path}: line 8, column 'Tpot (K)': expected a finite number, found '"), message
    assert len(message) < 300
    assert isinstance(info.value, ValueError)  # what the reader always raised
