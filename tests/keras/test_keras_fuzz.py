"""2,000 mutated Keras files (a fast subset unmarked): each loads or raises a KerasFileError naming the file.

Mutations of the real fixtures (``tests/support/fuzzing.py`` lists them): flipped bytes, truncations, reordered or
missing archive members, config values of the wrong type, shapes and types that disagree, huge declared
sizes. Each file is read in a worker process under a memory and a time limit: no crash, no hang, no
other exception type, nothing written. Then the findings of the fuzzer, each as a test of its own.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import seqtorch.keras as sk
from support.fuzzing import fuzz, summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "keras"
LSTM = FIXTURES / "imdb_lstm.keras"
LEGACY = FIXTURES / "jena_gru_reset_before.h5"


def _check(outcomes, count):
    bad = [o for o in outcomes if o.result not in ("loaded", "refused")]
    report = "\n".join(f"case {o.case.index} ({o.case.source}, {o.case.mutation}): {o.result}: {o.detail}"
                       for o in bad[:10])
    assert not bad, f"{summary(outcomes)}\n{report}"
    assert len(outcomes) == count
    results = {o.result for o in outcomes}
    assert results == {"loaded", "refused"}, summary(outcomes)  # the mutations reach both outcomes


def test_keras_files_fuzz_fast(tmp_path):
    _check(fuzz("keras", 30, seed=0, work=tmp_path), 30)


# Slow: the full count, 2,000 files (80 s on 2 cores); by default test_keras_files_fuzz_fast reads 30, with the
# same checks.
@pytest.mark.slow
def test_keras_files_fuzz_2000(tmp_path):
    outcomes = fuzz("keras", 2000, seed=2026, work=tmp_path)
    print(summary(outcomes))
    _check(outcomes, 2000)


# --- the findings, one by one ----------------------------------------------------------------------------


def _rewrite(source: Path, target: Path, edit) -> Path:
    """``source``'s archive with ``edit(name, bytes) -> bytes`` applied to each member."""
    with zipfile.ZipFile(source) as archive:
        members = [(info, edit(info.filename, archive.read(info))) for info in archive.infolist()]
    with zipfile.ZipFile(target, "w") as archive:
        for info, data in members:
            archive.writestr(info, data)
    return target


def _flipped(source: Path, bits: dict[int, int]) -> bytes:
    """``source`` with ``data[at] ^= mask`` for each ``at: mask`` of ``bits``."""
    data = bytearray(source.read_bytes())
    for at, mask in bits.items():
        data[at] ^= mask
    return bytes(data)


def _plain_h5py_read(path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """h5py reading every dataset and attribute of ``path``, in a process of its own."""
    code = ("import sys, h5py\n"
            "def walk(node):\n"
            "    [node.attrs[k] for k in node.attrs]\n"
            "    if isinstance(node, h5py.Dataset):\n"
            "        node[()]\n"
            "    else:\n"
            "        [walk(node[k]) for k in node.keys()]\n"
            "walk(h5py.File(sys.argv[1], 'r'))\n")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=timeout)


def test_a_file_that_crashes_libhdf5_is_a_keras_file_error(tmp_path):
    """One flipped bit (found by the fuzzer) makes libhdf5 2.0 die of a segmentation fault."""
    path = tmp_path / "damaged.h5"
    path.write_bytes(_flipped(LEGACY, {1009: 8}))
    with pytest.raises(sk.KerasFileError) as info:
        sk.load_model(path)
    assert str(info.value).startswith(f"{path}: ")
    if _plain_h5py_read(path).returncode >= 0:
        pytest.skip("this libhdf5 does not crash on the file (the guard is still exercised above)")
    assert "the HDF5 library crashed reading it (SIGSEGV)" in str(info.value)


LOOPING = {1104: 128, 2217: 8, 13889: 1, 16157: 64, 20248: 64}  # bits of imdb_lstm.weights.h5


def test_a_file_libhdf5_loops_on_is_a_keras_file_error(tmp_path, monkeypatch):
    """Five flipped bits (found by the fuzzer) make libhdf5 2.0 loop for ever: the child is stopped."""
    import seqtorch.keras.hdf5 as hdf5
    from seqtorch.models.imdb import RNNClassifier

    path = tmp_path / "damaged.weights.h5"
    path.write_bytes(_flipped(FIXTURES / "imdb_lstm.weights.h5", LOOPING))
    monkeypatch.setattr(hdf5, "TIME_LIMIT_S", 3.0)
    with pytest.raises(sk.KerasFileError) as info:
        sk.load_weights(RNNClassifier("lstm", 50, 8, 6, keras_faithful=True), path)
    assert str(info.value).startswith(f"{path}: ")


# Slow: it waits out a 30 s timeout; by default test_a_file_libhdf5_loops_on_is_a_keras_file_error reads the
# same file under the loader's time limit.
@pytest.mark.slow
def test_libhdf5_does_loop_on_that_file(tmp_path):
    path = tmp_path / "damaged.weights.h5"
    path.write_bytes(_flipped(FIXTURES / "imdb_lstm.weights.h5", LOOPING))
    try:
        done = _plain_h5py_read(path, timeout=30)
    except subprocess.TimeoutExpired:
        return  # it loops: what the child process's time limit is for
    pytest.skip(f"this libhdf5 does not loop on the file (exit status {done.returncode})")


def test_a_member_whose_offset_points_past_the_end(tmp_path):
    data = bytearray(LSTM.read_bytes())
    with zipfile.ZipFile(LSTM) as archive:
        start = archive.start_dir
    # The first directory entry's local-header offset: far past the end of the file.
    struct.pack_into("<I", data, start + 42, 0x7FFFFFF0)
    path = tmp_path / "offset.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(sk.KerasFileError, match=r"offset.keras: not a readable .keras archive"):
        sk.load_model(path)


@pytest.mark.parametrize("flag, method", [(0, 99), (1, None)], ids=["unknown-method", "encrypted"])
def test_compression_method_or_encryption_flag_flipped(tmp_path, flag, method):
    data = bytearray(LSTM.read_bytes())
    with zipfile.ZipFile(LSTM) as archive:
        info = archive.getinfo("config.json")
    entry = _directory_entry(data, "config.json")
    if method is not None:
        struct.pack_into("<H", data, entry + 10, method)
        struct.pack_into("<H", data, info.header_offset + 8, method)
    else:
        struct.pack_into("<H", data, entry + 8, struct.unpack_from("<H", data, entry + 8)[0] | flag)
        struct.pack_into("<H", data, info.header_offset + 6, struct.unpack_from("<H", data, info.header_offset + 6)[0] | flag)
    path = tmp_path / "flag.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(sk.KerasFileError, match=r"flag.keras: not a readable .keras archive"):
        sk.load_model(path)


def _directory_entry(data: bytes, name: str) -> int:
    """Where the central directory entry of member ``name`` starts."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        at = archive.start_dir
    while data[at:at + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        if data[at + 46:at + 46 + name_len].decode() == name:
            return at
        at += 46 + name_len + extra_len + comment_len
    raise KeyError(name)


def test_a_member_declaring_a_huge_size(tmp_path):
    data = bytearray(LSTM.read_bytes())
    with zipfile.ZipFile(LSTM) as archive:
        info = archive.getinfo("config.json")
    struct.pack_into("<I", data, _directory_entry(data, "config.json") + 24, 0xFFFFFFF0)  # its size
    path = tmp_path / "huge.keras"
    path.write_bytes(bytes(data))
    with pytest.raises(sk.KerasFileError, match=r"member config.json declares 4,294,967,280 bytes"):
        sk.load_model(path)
    assert info.file_size < 10_000


@pytest.mark.parametrize("text, reason", [
    ('{"keras_version": -1}', "metadata.json's keras_version is -1, not a version string"),
    ('{"keras_version": ' + "9" * 5000 + "}", "metadata.json is not valid JSON (ValueError: Exceeds the limit"),
    ('{"keras_version": ' + "[" * 100_000 + "]" * 100_000 + "}", "metadata.json is not valid JSON (RecursionError"),
])
def test_metadata_of_the_wrong_type_or_beyond_the_parser(tmp_path, text, reason):
    path = _rewrite(LSTM, tmp_path / "meta.keras",
                    lambda name, data: text.encode() if name == "metadata.json" else data)
    with pytest.raises(sk.KerasFileError, match=r"meta.keras: " + reason.replace("(", r"\(")):
        sk.load_model(path)


@pytest.mark.parametrize("replace, what", [
    (lambda c: c["config"]["layers"].__setitem__(2, {"class_name": "LSTM", "config": True}), "not an object"),
    (lambda c: c["config"]["layers"].__setitem__(2, 7), "a layer entry without a class_name"),
    (lambda c: c["config"].__setitem__("layers", "lstm"), "holds no layer list"),
    (lambda c: c.__setitem__("class_name", ["Sequential"]), "not a class name"),
    (lambda c: c["config"]["layers"][0]["config"].__setitem__("batch_shape", 3), "option batch_shape=3"),
    (lambda c: c["config"]["layers"][2]["config"].__setitem__("units", "x" * 10_000), "option units='xxx"),
])
def test_config_structure_of_the_wrong_type(tmp_path, replace, what):
    def edit(name, data):
        if name != "config.json":
            return data
        config = json.loads(data)
        replace(config)
        return json.dumps(config).encode()

    path = _rewrite(LSTM, tmp_path / "config.keras", edit)
    with pytest.raises(sk.KerasFileError) as info:
        sk.load_model(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and what in message and len(message) < 400, message


def _legacy_with(tmp_path, edit) -> Path:
    path = tmp_path / "edited.h5"
    path.write_bytes(LEGACY.read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


@pytest.mark.parametrize("edit, reason", [
    (lambda f: f["model_weights/dense_5/jena_gru_reset_before/dense_5"].move("kernel", "k")
     or f["model_weights/dense_5/jena_gru_reset_before/dense_5"].create_dataset("kernel", shape=(1 << 40,),
                                                                              dtype="f4", chunks=True),
     r"declares shape \(1099511627776,\)"),
    (lambda f: f.__setitem__("model_weights/extra", h5py.ExternalLink("/etc/hostname", "/")),
     r"/model_weights/extra is a ExternalLink; a Keras file holds hard links only"),
    (lambda f: f.__setitem__("model_weights/again", f["model_weights"]), r"a hard-link cycle"),
    (lambda f: f["model_weights"].create_dataset("text", data=np.array([b"a"])), r"holds \|S1 values, not numbers"),
])
def test_hdf5_content_no_keras_file_has(tmp_path, edit, reason):
    path = _legacy_with(tmp_path, edit)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(sk.KerasFileError, match=r"edited.h5: not a Keras file's HDF5 content: .*" + reason):
        sk.load_model(path)
    assert sorted(os.listdir(tmp_path)) == before


def test_the_snapshot_answers_what_the_layouts_ask(tmp_path):
    from seqtorch.keras.hdf5 import Dataset, Group, read_hdf5

    root = read_hdf5(str(LEGACY), str(LEGACY))
    assert isinstance(root, Group) and "model_weights" in root and "model_weights/gru_1" in root
    names = []
    root["model_weights"].visit(names.append)
    with h5py.File(LEGACY, "r") as f:
        expected = []
        f["model_weights"].visit(expected.append)
        assert sorted(names) == sorted(expected)
        for name in expected:
            node = root["model_weights"][name]
            if isinstance(f["model_weights"][name], h5py.Dataset):
                assert isinstance(node, Dataset) and np.array_equal(node[()], f["model_weights"][name][()])
            assert set(node.attrs) == set(f["model_weights"][name].attrs)
    data = io.BytesIO()
    with zipfile.ZipFile(LSTM) as archive:
        data.write(archive.read("model.weights.h5"))
    assert "layers/lstm/cell/vars/0" in read_hdf5(data.getvalue(), "inner")
