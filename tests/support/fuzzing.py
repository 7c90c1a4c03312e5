"""Seeded fuzzing of seqtorch's file readers: mutated copies of real files, each read in a sandboxed worker.

A *case* is a source file, a mutation and a seed; :func:`make_case` writes the mutated file. Mutations:

* bytes: flipped bits, overwritten, deleted or repeated spans, truncations, garbage appended;
* zip archives (``.keras``, ``.npz``): members reordered, dropped, repeated or renamed, a foreign member,
  a bad CRC, huge declared sizes in the headers, and a damaged member behind a recomputed CRC (so that
  the reader's own parser, not zip's CRC, meets the damage);
* JSON (a ``.keras`` config and metadata, a legacy ``.h5``'s ``model_config``): a value replaced by one
  of the wrong type (text, numbers, huge numbers, NaN, lists, objects, null, deep nesting), a key removed;
* HDF5 (legacy ``.h5``, ``model.weights.h5``): a dataset or attribute removed, a dataset of another
  shape or type, one that declares a huge size without storing it, a list attribute changed;
* ``.npy`` members (``imdb.npz``): values of the wrong type, lengths that disagree, labels that are
  not 0/1, a header declaring a huge shape;
* Jena CSV: lines swapped, repeated or dropped, cells emptied or made text, huge or non-finite, fields
  added or removed, timestamps out of range, other line endings, NUL bytes, a byte-order mark.

:func:`run_cases` reads every file in a worker process (``python tests/support/fuzzing.py worker TARGET``)
with an address-space limit (``MEMORY_LIMIT``) and a time limit per file (``TIME_LIMIT_S``), and classifies
each outcome: ``loaded``, ``refused`` (the reader's documented error, naming the file), ``wrong``
(any other exception, or an error that does not name the file), ``wrote`` (a file appeared or changed
where the reader must not write), ``crash`` (the worker died), ``hang`` (over the time limit). A crash or
a hang restarts the worker for the next case.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import select
import struct
import subprocess
import sys
import time
import traceback
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

TESTS = Path(__file__).resolve().parents[1]  # tests/: its fixtures, and the import root of `support`
MEMORY_LIMIT = 3 << 30  # bytes of address space for a worker: the interpreter with torch is about 0.7 GiB
# Per file: above the readers' own bound (libhdf5's child process has 20 s), so that bound is tested too.
TIME_LIMIT_S = 60.0


@dataclasses.dataclass(frozen=True)
class Case:
    index: int
    source: str
    mutation: str


@dataclasses.dataclass
class Outcome:
    case: Case
    result: str  # loaded, refused, wrong, wrote, crash, hang
    detail: str
    seconds: float
    max_rss_mib: float


# --- mutations on bytes --------------------------------------------------------------------------------------


def flip_bits(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    out = bytearray(data)
    spots = sorted(rng.randrange(len(out)) for _ in range(rng.randint(1, 8)))
    for i in spots:
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out), f"flip bits at {spots}"


def overwrite_span(rng, data):
    start, length = rng.randrange(len(data)), rng.randint(1, 64)
    fill = rng.choice([b"\0", b"\xff", None])
    chunk = bytes(rng.randrange(256) for _ in range(length)) if fill is None else fill * length
    return data[:start] + chunk + data[start + length:], f"overwrite {length} bytes at {start} with {fill!r}"


def truncate(rng, data):
    n = rng.choice([rng.randrange(len(data)), rng.randrange(min(len(data), 200)), len(data) - rng.randint(1, 200)])
    n = max(0, n)
    return data[:n], f"truncate to {n} of {len(data)} bytes"


def delete_span(rng, data):
    start, length = rng.randrange(len(data)), rng.randint(1, 256)
    return data[:start] + data[start + length:], f"delete {length} bytes at {start}"


def repeat_span(rng, data):
    start, length = rng.randrange(len(data)), rng.randint(1, 256)
    return data[:start] + data[start:start + length] * 2 + data[start + length:], f"repeat {length} bytes at {start}"


def append_garbage(rng, data):
    n = rng.randint(1, 4096)
    return data + bytes(rng.randrange(256) for _ in range(n)), f"append {n} random bytes"


BYTE_MUTATIONS = (flip_bits, flip_bits, overwrite_span, truncate, delete_span, repeat_span, append_garbage)


# --- zip archives ------------------------------------------------------------------------------------------


def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [(info, archive.read(info)) for info in archive.infolist()]


def _zip(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for info, content in members:
            info = copy.copy(info)
            archive.writestr(info, content)
    return buf.getvalue()


def zip_reorder(rng, data):
    members = _members(data)
    rng.shuffle(members)
    return _zip(members), f"members reordered: {[i.filename for i, _ in members]}"


def zip_drop(rng, data):
    members = _members(data)
    gone = members.pop(rng.randrange(len(members)))
    return _zip(members), f"member {gone[0].filename} dropped"


def zip_repeat(rng, data):
    members = _members(data)
    twice = rng.choice(members)
    other = (twice[0], rng.choice(members)[1])  # the same name, maybe other content
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        return _zip(members + [other]), f"member {twice[0].filename} twice"


def zip_rename(rng, data):
    members = _members(data)
    i = rng.randrange(len(members))
    info = copy.copy(members[i][0])
    new = rng.choice([info.filename + "x", info.filename.upper(), "../" + info.filename, info.filename[:-1], ""])
    info.filename = new or "_"
    members[i] = (info, members[i][1])
    return _zip(members), f"member {members[i][0].filename!r} renamed"


def zip_foreign(rng, data):
    members = _members(data)
    info = zipfile.ZipInfo(rng.choice(["assets/x.bin", "config.json.bak", "variables/vars"]))
    members.insert(rng.randrange(len(members) + 1), (info, bytes(rng.randrange(256) for _ in range(100))))
    return _zip(members), f"foreign member {info.filename}"


def _header_offsets(data: bytes) -> list[tuple[int, int]]:
    """(local header offset, central directory entry offset) of each member."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        cd_start = archive.start_dir
        locals_ = [info.header_offset for info in archive.infolist()]
    centrals, at = [], cd_start
    for _ in locals_:
        centrals.append(at)
        name_len, extra_len, comment_len = struct.unpack("<HHH", data[at + 28:at + 34])
        at += 46 + name_len + extra_len + comment_len
    return list(zip(locals_, centrals))


def zip_huge_sizes(rng, data):
    """A member declares a huge (or otherwise wrong) size, in its local header, the directory, or both."""
    out = bytearray(data)
    local, central = rng.choice(_header_offsets(data))
    value = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 1 << 30, 0, 1])
    field = rng.choice(["compressed", "uncompressed"])
    where = rng.choice(["local", "central", "both"])
    if where in ("local", "both"):
        struct.pack_into("<I", out, local + (18 if field == "compressed" else 22), value)
    if where in ("central", "both"):
        struct.pack_into("<I", out, central + (20 if field == "compressed" else 24), value)
    return bytes(out), f"{field} size {value:#x} in the {where} header(s)"


def zip_bad_crc(rng, data):
    out = bytearray(data)
    local, central = rng.choice(_header_offsets(data))
    for at in (local + 14, central + 16):
        struct.pack_into("<I", out, at, rng.getrandbits(32))
    return bytes(out), "member CRC replaced"


def zip_damaged_member(rng, data, name: str | None = None):
    """Bytes of one member mutated and its CRC recomputed: the damage reaches the member's parser."""
    members = _members(data)
    i = next((k for k, (info, _) in enumerate(members) if info.filename == name), None) if name else None
    i = rng.randrange(len(members)) if i is None else i
    mutated, what = rng.choice(BYTE_MUTATIONS)(rng, members[i][1] or b"\0")
    members[i] = (members[i][0], mutated)
    return _zip(members), f"member {members[i][0].filename}: {what} (CRC recomputed)"


def zip_member_edit(data, name: str, edit: Callable[[bytes], tuple[bytes, str]]) -> tuple[bytes, str]:
    members = _members(data)
    i = next(k for k, (info, _) in enumerate(members) if info.filename == name)
    content, what = edit(members[i][1])
    members[i] = (members[i][0], content)
    return _zip(members), f"{name}: {what}"


ZIP_MUTATIONS = (zip_reorder, zip_drop, zip_repeat, zip_rename, zip_foreign, zip_huge_sizes, zip_bad_crc,
                 zip_damaged_member)


# --- JSON --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Deep:
    """A list nested ``depth`` times, written by :func:`dump_json` as text (no encoder recurses that deep)."""

    depth: int


def _wrong_values(rng: random.Random, value) -> list:
    """Values of another type than ``value`` (and a few of the same type that no writer produces)."""
    pool = ["", "x" * rng.choice([1, 10_000]), "six", 0, -1, 1 << 70, 10 ** 5000, 1e308, -0.0, math.nan, math.inf,
            True, False, None, [], [1, "a"], {}, {"class_name": 3}, Deep(rng.choice([50, 100_000]))]
    return [v for v in pool if type(v) is not type(value)] + [v for v in pool[:3] if isinstance(value, str)]


def _nodes(obj, path=()):
    """(path, value) of every node of a JSON value."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _nodes(v, path + (i,))


def json_mutation(rng: random.Random, obj) -> tuple[object, str]:
    """A copy of ``obj`` with one value replaced by one of the wrong type, or one key removed."""
    obj = copy.deepcopy(obj)
    nodes = [(p, v) for p, v in _nodes(obj) if p]
    path, value = rng.choice(nodes)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[path[-1]]
        return obj, f"key {'/'.join(map(str, path))} removed"
    new = rng.choice(_wrong_values(rng, value))
    parent[path[-1]] = new
    return obj, f"{'/'.join(map(str, path))}: {_show(value)} -> {_show(new)}"


def _show(value) -> str:
    """A short description of a JSON value (deep lists and huge ints have no usable repr)."""
    if isinstance(value, (list, dict)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, Deep):
        return f"a list nested {value.depth} deep"
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    return repr(value)[:40]


def dump_json(obj) -> bytes:
    """JSON text of ``obj``, :class:`Deep` values as nested brackets, huge ints in full."""
    deep: dict[str, int] = {}

    def placeholder(value):
        if isinstance(value, Deep):
            deep[f"@deep{len(deep)}@"] = value.depth
            return f"@deep{len(deep) - 1}@"
        raise TypeError(type(value).__name__)

    limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
    if limit:
        sys.set_int_max_str_digits(0)  # 10 ** 5000 is a test value: write it
    try:
        text = json.dumps(obj, default=placeholder)
    finally:
        if limit:
            sys.set_int_max_str_digits(limit)
    for key, depth in deep.items():
        text = text.replace(f'"{key}"', "[" * depth + "0" + "]" * depth)
    return text.encode()


# --- HDF5 --------------------------------------------------------------------------------------------------


def h5_mutation(rng: random.Random, data: bytes, path_hint: str = "") -> tuple[bytes, str]:
    """A structural edit of an HDF5 file (given as bytes) made with h5py; returns the new bytes."""
    import h5py

    with h5py.File(io.BytesIO(data), "r") as f:  # read every object into memory, then write a new file
        datasets, groups = [], []
        f.visititems(lambda name, obj: (datasets if isinstance(obj, h5py.Dataset) else groups).append(name))
    out = io.BytesIO(data)
    with h5py.File(out, "r+") as f:
        kind = rng.choice(["drop", "shape", "dtype", "huge", "attr", "attr", "list"])
        with_attrs = [n for n in ["/"] + groups + datasets if len(f[n].attrs)]
        if kind == "drop" and datasets + groups:
            name = rng.choice(datasets + groups)
            del f[name]
            what = f"removed {name}"
        elif kind in ("shape", "dtype", "huge") and datasets:
            name = rng.choice(datasets)
            array = f[name][()]
            del f[name]
            if kind == "shape":
                shapes = [(0,), (1,), array.shape[::-1], array.shape + (1,), (array.size + 1,), (), (3, 0, 2)]
                shape = rng.choice(shapes)
                f.create_dataset(name, data=np.resize(array, shape) if shape != () else np.float32(1.5))
                what = f"{name}: shape {array.shape} -> {shape}"
            elif kind == "dtype":
                dtype = rng.choice(["i8", "f2", "c8", "?", "u1", "S4", "str"])
                if dtype == "S4":
                    values = np.full(array.shape, b"ab", dtype="S4")
                elif dtype == "str":
                    values = np.array(["x"] * max(array.size, 1), dtype=h5py.string_dtype())
                else:
                    values = array.astype(dtype)
                f.create_dataset(name, data=values)
                what = f"{name}: dtype -> {dtype}"
            else:
                shape = rng.choice([(1 << 31, 1 << 10), (1 << 40,), (array.shape[0], 1 << 34)])
                f.create_dataset(name, shape=shape, dtype="f4", chunks=True)
                what = f"{name}: declares shape {shape} (nothing stored)"
        elif kind in ("attr", "list") and with_attrs:
            owner = f[rng.choice(with_attrs)]
            key = rng.choice(list(owner.attrs))
            value = owner.attrs[key]
            if kind == "list" and isinstance(value, np.ndarray) and value.size:
                items = [bytes(v) if isinstance(v, (bytes, np.bytes_)) else str(v).encode() for v in value.tolist()]
                op = rng.choice(["drop", "repeat", "rename", "empty"])
                if op == "drop":
                    items.pop(rng.randrange(len(items)))
                elif op == "repeat":
                    items.append(rng.choice(items))
                elif op == "rename":
                    i = rng.randrange(len(items))
                    items[i] = items[i] + b"_x"
                else:
                    items = []
                owner.attrs[key] = np.array(items, dtype="S") if items else np.array([], dtype="S1")
                what = f"attribute {owner.name}@{key}: list {op}"
            elif key == "model_config" or (isinstance(value, (bytes, str)) and str(value)[:1] == "{"):
                text = value.decode() if isinstance(value, bytes) else value
                mutated, detail = json_mutation(rng, json.loads(text))
                owner.attrs[key] = dump_json(mutated)
                what = f"attribute {owner.name}@{key}: {detail}"
            elif rng.random() < 0.5:
                del owner.attrs[key]
                what = f"attribute {owner.name}@{key} removed"
            else:
                new = rng.choice([np.int64(7), np.float32(1.5), b"\xff\xfe", np.array([1, 2]), "3.x"])
                owner.attrs[key] = new
                what = f"attribute {owner.name}@{key} -> {new!r}"
        else:
            return flip_bits(rng, data)
    return out.getvalue(), what


# --- .npy members of an .npz -------------------------------------------------------------------------------


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _objects(items) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        arr[i] = item
    return arr


def npz_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    members = _members(data)
    names = [info.filename for info, _ in members]
    name = rng.choice(names)
    with np.load(io.BytesIO(data), allow_pickle=True) as npz:
        arrays = {n: npz[n] for n in npz.files}
    key = name[:-4]
    array = arrays[key]
    n = len(array)
    kind = rng.choice(["values", "values", "length", "labels", "header", "header", "pickle"])
    if kind == "values":
        choices = [
            ("floats", _objects([[1.5, 2.0]] * n)), ("strings", _objects(["ab"] * n)),
            ("nested", _objects([[[1, 2], [3]]] * n)), ("dicts", _objects([{"a": 1}] * n)),
            ("none", _objects([None] * n)), ("huge ids", _objects([[2 ** 40, 3]] * n)),
            ("negative ids", _objects([[-5, 2]] * n)), ("float array", np.full(n, 0.5)),
            ("2-D", np.zeros((n, 3), dtype=np.int64)), ("empty", np.zeros(0, dtype=object)),
            ("bools", _objects([[True, False]] * n)), ("bytes", _objects([b"\x01\x02"] * n)),
            ("complex", np.full(n, 1 + 2j)), ("scalar", np.array(3)),
        ]
        what, new = rng.choice(choices)
        content = _npy(new)
    elif kind == "length":
        new = array[: rng.randrange(n)] if n else array
        what, content = f"{n} -> {len(new)} entries", _npy(new)
    elif kind == "labels":
        new = rng.choice([np.full(n, 2), np.full(n, -1), np.full(n, 0.5), np.array(["1"] * n), np.full((n, 2), 1)])
        what, content = f"values -> {new.dtype} {new.ravel()[:1]}", _npy(new)
    elif kind == "header":
        original = _npy(array)
        header_len = struct.unpack("<H", original[8:10])[0]
        body = original[10 + header_len:]
        shape = rng.choice([(10 ** 12,), (2 ** 62,), (n, 10 ** 9), (0,), (n + 1,), ()])
        descr = rng.choice([array.dtype.str, "<f8", "|O", "<U10", "|V8", "<i8", "garbage"])
        header = repr({"descr": descr, "fortran_order": rng.random() < 0.2, "shape": shape}).encode()
        header = header.ljust(((len(header) + 11) // 64 + 1) * 64 - 11) + b"\n"
        what = f"header declares descr {descr}, shape {shape}"
        content = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + body
    else:
        mutated, detail = rng.choice(BYTE_MUTATIONS)(rng, _npy(array))
        what, content = f"bytes: {detail}", mutated
    i = names.index(name)
    members[i] = (members[i][0], content)
    return _zip(members), f"{name}: {what}"


# --- Jena CSV ----------------------------------------------------------------------------------------------


def csv_mutation(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    body = list(range(1, len(lines) - 1))  # the data lines (the last element is after the final newline)
    i, j = rng.choice(body), rng.choice(body)
    kind = rng.choice(["swap", "repeat", "drop", "cell", "cell", "fields", "timestamp", "endings", "nul", "bom",
                       "header", "blank"])
    cells = lines[i].split(b",")
    if kind == "swap":
        lines[i], lines[j] = lines[j], lines[i]
        what = f"lines {i + 1} and {j + 1} swapped"
    elif kind == "repeat":
        lines.insert(i, lines[i])
        what = f"line {i + 1} twice"
    elif kind == "drop":
        del lines[i]
        what = f"line {i + 1} dropped"
    elif kind == "cell":
        col = rng.randrange(1, len(cells))
        cells[col] = rng.choice([b"", b"abc", b"nan", b"inf", b"-inf", b"1e400", b"1" * 5000, b"0x1A", b"1,5",
                                 b"--3", b"3.4.5", b" 4", b"\xff\xfe", b"\"7\"", b"1_000"])
        lines[i] = b",".join(cells)
        what = f"line {i + 1}, column {col}: {cells[col][:20]!r}"
    elif kind == "fields":
        if rng.random() < 0.5:
            cells.pop(rng.randrange(len(cells)))
        else:
            cells.insert(rng.randrange(len(cells)), b"1.00")
        lines[i] = b",".join(cells)
        what = f"line {i + 1}: {len(cells)} fields"
    elif kind == "timestamp":
        stamp = rng.choice([b"31.02.2009 00:10:00", b"01.13.2009 00:10:00", b"01.01.2009 24:00:00",
                            b"00.01.2009 00:10:00", b"01.01.0000 00:00:00", b"01.01.9999 23:59:59",
                            b"1.1.2009 00:10:00", b"01/01/2009 00:10:00", b"01.01.2009T00:10:00"])
        cells[0] = stamp
        lines[i] = b",".join(cells)
        what = f"line {i + 1}: timestamp {stamp!r}"
    elif kind == "endings":
        ending = rng.choice([b"\r\n", b"\r", b"\n\n"])
        what = f"line endings {ending!r}"
        return ending.join(lines), what
    elif kind == "nul":
        at = rng.randrange(len(data))
        return data[:at] + b"\0" * rng.randint(1, 100) + data[at:], f"NUL bytes at {at}"
    elif kind == "bom":
        return rng.choice([b"\xef\xbb\xbf", b"\xff\xfe"]) + data, "a byte-order mark"
    elif kind == "header":
        header = lines[0]
        lines[0] = rng.choice([header.lower(), header.replace(b'"', b""), header + b',"extra"', b"", header[:-5]])
        what = "header changed"
    else:
        lines.insert(i, b"")
        what = f"blank line before line {i + 1}"
    return b"\n".join(lines), what


# --- what each target fuzzes -------------------------------------------------------------------------------


def _keras_archive(rng, data, source):
    kind = rng.choices(["bytes", "zip", "config", "metadata", "weights", "weights bytes"], [3, 3, 3, 1, 3, 2])[0]
    if kind == "bytes":
        return rng.choice(BYTE_MUTATIONS)(rng, data)
    if kind == "zip":
        return rng.choice(ZIP_MUTATIONS)(rng, data)
    if kind in ("config", "metadata"):
        def edit(content):
            mutated, what = json_mutation(rng, json.loads(content))
            return dump_json(mutated), what
        return zip_member_edit(data, f"{kind}.json", edit)
    if kind == "weights":
        return zip_member_edit(data, "model.weights.h5", lambda content: h5_mutation(rng, content))
    return zip_damaged_member(rng, data, "model.weights.h5")


def _keras_hdf5(rng, data, source):
    return rng.choice(BYTE_MUTATIONS)(rng, data) if rng.random() < 0.5 else h5_mutation(rng, data)


def _imdb_npz(rng, data, source):
    kind = rng.choices(["bytes", "zip", "npy"], [2, 3, 5])[0]
    if kind == "bytes":
        return rng.choice(BYTE_MUTATIONS)(rng, data)
    return rng.choice(ZIP_MUTATIONS)(rng, data) if kind == "zip" else npz_mutation(rng, data)


def _jena_csv(rng, data, source):
    return rng.choice(BYTE_MUTATIONS)(rng, data) if rng.random() < 0.4 else csv_mutation(rng, data)


def keras_setup(folder: Path) -> tuple[list[Path], dict]:
    """The real Keras files of the fixtures (.keras, a legacy model .h5, a .weights.h5) and their mutators."""
    fixtures = TESTS / "fixtures" / "keras"
    sources = sorted(fixtures.glob("*.keras")) + [fixtures / "jena_gru_reset_before.h5",
                                                  fixtures / "imdb_lstm.weights.h5"]
    return sources, {".keras": [(1, _keras_archive)], ".h5": [(1, _keras_hdf5)]}


def imdb_setup(folder: Path) -> tuple[list[Path], dict]:
    """A small imdb.npz in Keras' format (object arrays of id lists, pickled) and its mutators."""
    rng = np.random.default_rng(0)
    reviews = [rng.integers(1, 40, size=rng.integers(1, 12)).tolist() for _ in range(20)]
    path = folder / "imdb.npz"
    np.savez(path, x_train=_objects(reviews[:12]), y_train=np.arange(12) % 2, x_test=_objects(reviews[12:]),
             y_test=np.arange(8) % 2)
    return [path], {".npz": [(1, _imdb_npz)]}


def jena_setup(folder: Path) -> tuple[list[Path], dict]:
    """A 300-row CSV in the Jena record's format and its mutators."""
    from support.jena_fixture import write_jena_csv

    path = write_jena_csv(folder / "jena_climate_2009_2016.csv", n_rows=300).path
    return [path], {".csv": [(1, _jena_csv)]}


SETUPS = {"keras": keras_setup, "imdb": imdb_setup, "jena": jena_setup}


def fuzz(target: str, count: int, seed: int, work: Path, budget_s: float | None = None) -> list[Outcome]:
    """``count`` cases of ``target`` ("keras", "imdb", "jena"), made and read in ``work``."""
    sources_dir = work / "sources"
    sources_dir.mkdir(parents=True)
    sources, mutators = SETUPS[target](sources_dir)
    return run_cases(target, count, seed, sources, mutators, work / "cases", budget_s=budget_s)


# --- cases and the sandboxed runner ------------------------------------------------------------------------


def make_case(index: int, seed: int, sources: list[Path], mutators: dict, out_dir: Path) -> tuple[Path, Case]:
    """Write the mutated file of case ``index``; ``mutators`` maps a source's suffix to a list of
    ``(weight, mutate(rng, data, source) -> (bytes, description))``."""
    rng = random.Random(f"{seed}:{index}")
    source = rng.choice(sources)
    options = mutators[next(s for s in mutators if source.name.endswith(s))]
    weights = [w for w, _ in options]
    for _ in range(20):  # a mutation may not apply to this file (no dataset to drop): draw another
        mutate = rng.choices([m for _, m in options], weights)[0]
        try:
            data, what = mutate(rng, source.read_bytes(), source)
            break
        except (ValueError, KeyError, IndexError, zipfile.BadZipFile, OSError):
            continue
    else:
        raise RuntimeError(f"no mutation applies to {source}")
    path = out_dir / f"case{index:05d}_{source.name}"
    path.write_bytes(data)
    return path, Case(index, source.name, f"{mutate.__name__}: {what}")


class Worker:
    """A worker process that reads files for ``target`` (see :func:`worker_main`) and reports on each."""

    def __init__(self, target: str, env: dict) -> None:
        self.target, self.env = target, env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "worker", self.target], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env,
                                     preexec_fn=_limit_memory)
        ready = self._read_line(120.0)
        assert ready == "ready", ready

    def _read_line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return line.decode().strip() if line else ""

    def read(self, path: Path, watch: list[Path]) -> tuple[str, str, float, float]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write((json.dumps({"path": str(path), "watch": [str(w) for w in watch]}) + "\n").encode())
        self.proc.stdin.flush()
        line = self._read_line(TIME_LIMIT_S)
        if line is None:
            self.stop()
            return "hang", f"no answer within {TIME_LIMIT_S:.0f} s", TIME_LIMIT_S, 0.0
        if line == "":
            code = self.proc.wait()
            self.proc = None
            return "crash", f"the worker died (exit status {code})", 0.0, 0.0
        reply = json.loads(line)
        return reply["result"], reply["detail"], reply["seconds"], reply["max_rss_mib"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cases(target: str, count: int, seed: int, sources: list[Path], mutators: dict, work: Path,
              env: dict | None = None, budget_s: float | None = None) -> list[Outcome]:
    """Make and read ``count`` cases (or as many as ``budget_s`` seconds allow); one Outcome each."""
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    cache.mkdir(exist_ok=True)
    paths = [str(TESTS.parent / "src"), str(TESTS), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "SEQTORCH_DATA": str(cache),
           "OMP_NUM_THREADS": "1", **(env or {})}
    worker = Worker(target, env)
    outcomes = []
    started = time.monotonic()
    try:
        for index in range(count):
            if budget_s is not None and time.monotonic() - started > budget_s:
                break
            case_dir = work / f"case{index:05d}"
            case_dir.mkdir()
            path, case = make_case(index, seed, sources, mutators, case_dir)
            result, detail, seconds, rss = worker.read(path, [case_dir, cache])
            outcomes.append(Outcome(case, result, detail, seconds, rss))
            for entry in sorted(case_dir.iterdir()):
                entry.unlink()
            case_dir.rmdir()
    finally:
        worker.stop()
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    """Counts by result (refusals by error class, and how many were a crash or a hang the reader
    itself contained), the slowest file, the worker's peak memory."""
    counts: dict[str, int] = {}
    for o in outcomes:
        key = o.result
        if o.result == "refused":
            key = f"refused ({o.detail.split(':')[0]})"
            if "crashed reading it" in o.detail or "took longer than" in o.detail:
                key = f"refused ({o.detail.split(':')[0]}, a libhdf5 {'crash' if 'crashed' in o.detail else 'hang'} contained)"
        counts[key] = counts.get(key, 0) + 1
    slowest = max((o.seconds for o in outcomes), default=0.0)
    rss = max((o.max_rss_mib for o in outcomes), default=0.0)
    return (f"{len(outcomes)} files: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            + f"; slowest {slowest:.2f} s; worker peak RSS {rss:.0f} MiB")


# --- the worker --------------------------------------------------------------------------------------------


def _listing(folders: list[Path]) -> dict:
    """Every file under ``folders`` with its size and mtime: what a reader must not change."""
    seen = {}
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                p = os.path.join(root, name)
                with contextlib.suppress(OSError):  # removed while listed
                    st = os.stat(p)
                    seen[p] = (st.st_size, st.st_mtime_ns)
    return seen


def worker_main(target: str) -> None:
    """Read the files named on stdin (one JSON line each) with ``target``'s reader; answer one JSON line each."""
    import resource
    import warnings

    warnings.simplefilter("ignore")
    reader, expected, may_write_cache = TARGETS[target]()
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        path, watch = Path(request["path"]), [Path(w) for w in request["watch"]]
        before = _listing(watch)
        started = time.perf_counter()
        try:
            reader(path)
            result, detail = "loaded", ""
        except expected as exc:
            named = str(path) in str(exc)
            result = "refused" if named else "wrong"
            detail = f"{type(exc).__name__}: {str(exc)[:300]}" + ("" if named else " [the message does not name the file]")
        except BaseException as exc:  # noqa: BLE001 - every other exception is a finding
            result = "wrong"
            detail = f"{type(exc).__name__}: {str(exc)[:300]}\n" + "".join(traceback.format_exc()[-3000:])
        seconds = time.perf_counter() - started
        after = _listing(watch)
        changed = sorted(p for p in after if before.get(p) != after[p]) + sorted(set(before) - set(after))
        cache_entries = [p for p in changed if "cache" in Path(p).parts]
        allowed = may_write_cache and result == "loaded" and changed == cache_entries and \
            not any(p.endswith(".part") for p in changed)
        if changed and not allowed:
            result, detail = "wrote", f"changed {changed} ({result}: {detail[:200]})"
        for p in after:  # a new cache entry is removed, so that every case starts from an empty cache
            if "cache" in Path(p).parts and p not in before:
                os.unlink(p)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"result": result, "detail": detail, "seconds": seconds, "max_rss_mib": rss}), flush=True)


def _keras_target():
    import torch  # noqa: F401 - imported before the first case, not inside its time

    import seqtorch.keras as sk
    from seqtorch.models.imdb import RNNClassifier

    def read(path: Path):
        if path.name.endswith(".weights.h5"):
            sk.load_weights(RNNClassifier("lstm", 50, 8, 6, keras_faithful=True), path)
        else:
            sk.load_model(path)

    return read, sk.KerasFileError, False


def _imdb_target():
    from seqtorch.data.imdb import ImdbFileError, read_corpus

    def read(path: Path):
        read_corpus(path, npz_sha256=hashlib.sha256(path.read_bytes()).hexdigest(), progress=False)

    return read, ImdbFileError, True


def _jena_target():
    from seqtorch.data.jena import JenaFileError, load_jena

    return (lambda path: load_jena(path)), JenaFileError, True


TARGETS = {"keras": _keras_target, "imdb": _imdb_target, "jena": _jena_target}


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker_main(sys.argv[2])
