"""An IMDB archive cut short is reported as truncated, wherever the cut falls, and never read as a smaller
data set (tarfile's stream reader stops quietly where the data stops: a cut gzip archive used to come out
as a "missing split").
"""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from support.imdb_fixture import write_aclimdb_tarball
from seqtorch.data.errors import DataFileError
from seqtorch.data.imdb import read_corpus


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQTORCH_DATA", str(tmp_path / "cache"))


@pytest.fixture
def tarball(tmp_path):
    return write_aclimdb_tarball(tmp_path / "full.tar.gz", train=30, test=10)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, -10], ids=["10%", "50%", "90%", "all-but-10-bytes"])
def test_a_cut_gzip_archive_is_truncated(tmp_path, tarball, keep):
    data = tarball.read_bytes()
    cut = tmp_path / "aclImdb_v1.tar.gz"
    cut.write_bytes(data[:keep] if keep < 0 else data[:int(len(data) * keep)])
    with pytest.raises(DataFileError, match="is truncated") as info:
        read_corpus(cut, progress=False)
    assert str(cut) in str(info.value) and "missing split" not in str(info.value)
    assert not list((tmp_path / "cache").rglob("*.npz"))  # nothing cached from it


def test_a_tar_cut_between_two_members_is_truncated(tmp_path, tarball):
    """An uncompressed archive cut exactly where a member's header would begin: no error from tarfile."""
    raw = gzip.decompress(tarball.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        members = tar.getmembers()
    boundary = members[len(members) // 2].offset  # the header of a member in the middle
    cut = tmp_path / "aclImdb_v1.tar"
    cut.write_bytes(raw[:boundary])
    with pytest.raises(DataFileError, match="is truncated.*end-of-archive"):
        read_corpus(cut, progress=False)
    whole = tmp_path / "whole.tar"
    whole.write_bytes(raw)
    corpus = read_corpus(whole, progress=False)  # the same archive, complete, reads
    assert corpus.labels["train"].size == 60 and corpus.labels["test"].size == 20
