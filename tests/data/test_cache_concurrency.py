"""Two processes preparing the same dataset cache at once (the IMDB parse, the Jena parse) both succeed,
and the cache holds one valid entry.

The two processes are real. So that they truly overlap, each waits, just before it writes its entry,
until the other has parsed too: both have missed the cache, both write the same entry. Then a third
load is served from that entry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.jena_fixture import write_jena_csv
from test_data_imdb import write_tarball

TESTS = Path(__file__).resolve().parents[1]

CHILD = """
import json, os, sys, time
from pathlib import Path
import numpy as np

kind, source, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3])
if kind == "imdb":
    import seqtorch.data.imdb as module
else:
    import seqtorch.data.jena as module
real_write = module.write_cache_entry

def meet_then_write(path, write):
    (sync / f"parsed-{os.getpid()}").touch()  # this process missed the cache and parsed
    deadline = time.monotonic() + 60
    while len(list(sync.glob("parsed-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    real_write(path, write)

module.write_cache_entry = meet_then_write
if kind == "imdb":
    corpus = module.read_corpus(source, progress=False)
    digest = [corpus.ranks["train"].tolist(), corpus.offsets["test"].tolist(), corpus.vocab.words]
else:
    table = module.load_jena(source)
    digest = [float(table.values.sum()), len(table.values), table.summary.csv_md5]
print(json.dumps(digest))
"""


def _two_at_once(kind: str, source: Path, cache: Path, sync: Path) -> list:
    sync.mkdir()
    env = {**os.environ, "SEQTORCH_DATA": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), kind, str(source), str(sync)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert len(list(sync.glob("parsed-*"))) == 2  # both parsed: they really raced for the entry
    return results


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_two_processes_parse_imdb_into_one_cache_entry(tmp_path, monkeypatch):
    source = write_tarball(tmp_path / "aclImdb_v1.tar.gz")
    cache = tmp_path / "cache"
    first, second = _two_at_once("imdb", source, cache, tmp_path / "sync")
    assert first == second
    (entry,) = _entries(cache / "imdb")  # one entry, no temporary file
    assert entry.startswith("corpus-") and entry.endswith(".npz")
    monkeypatch.setenv("SEQTORCH_DATA", str(cache))
    from seqtorch.data import imdb

    monkeypatch.setattr(imdb, "_corpus_from_reviews", lambda *a: pytest.fail("parsed again"))
    corpus = imdb.read_corpus(source, progress=False)  # served by the entry
    assert corpus.ranks["train"].tolist() == first[0]


def test_two_processes_parse_jena_into_one_cache_entry(tmp_path, monkeypatch):
    source = write_jena_csv(tmp_path / "jena_climate_2009_2016.csv", n_rows=3000).path
    cache = tmp_path / "cache"
    first, second = _two_at_once("jena", source, cache, tmp_path / "sync")
    assert first == second
    (entry,) = _entries(cache / "jena")
    assert entry.startswith("parsed-") and entry.endswith(".npz")
    monkeypatch.setenv("SEQTORCH_DATA", str(cache))
    from seqtorch.data import jena

    monkeypatch.setattr(jena, "parse_jena_csv", lambda *a, **k: pytest.fail("parsed again"))
    with pytest.warns(jena.JenaChecksumWarning):
        table = jena.load_jena(source)
    assert float(table.values.sum()) == first[0]
